//! `quiver`: the command line of the Quiver vector database.
//!
//! Every failure is one line on stderr, `quiver: <what went wrong>`, and its
//! exit code says which kind it is:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done |
//! | 1 | not found: `get` or `delete` of an id the database does not hold |
//! | 2 | bad input (arguments, values out of range, a bad vector file, a path that is no database) or another failure (a busy database, an I/O error) |
//! | 3 | the database is damaged: `verify` found damage, or a file failed its checks; the message says what to do next |
//! | 130 | interrupted by Ctrl-C or SIGTERM (`import` prints the `--start ROW` that resumes it) |
//!
//! Work that takes more than a moment shows a progress bar on stderr when it
//! is a terminal.

/// `println!` that returns an error instead of panicking when stdout is
/// closed (`quiver search ... | head`); `main` ends quietly on a broken pipe.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?
    }};
}

mod bench;
mod bench_build;
mod commands;
mod compact;
mod demo;
mod import;
mod interrupt;

use clap::{Parser, Subcommand};
use std::fmt;
use std::path::Path;
use std::process::ExitCode;

/// The exit codes, as `--help` shows them (the module docs hold the table).
const EXIT_CODES: &str = "Exit codes: 0 done; 1 not found (get or delete of an unknown id); \
2 bad input (arguments, values out of range, a bad vector file, a path that is no database) \
or another failure (a busy database, an I/O error); 3 the database is damaged (verify found \
damage, or a file failed its checks); 130 interrupted by Ctrl-C or SIGTERM.";

/// Quiver: an embedded, persistent vector database.
#[derive(Debug, Parser)]
#[command(name = "quiver", version, about, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an empty database directory.
    Create(commands::CreateArgs),
    /// Load vectors from .fvecs, .bvecs, .fbin, .u8bin, .npy or JSON Lines,
    /// committing in batches.
    ///
    /// A row's id is its row number in the file plus --id-offset, or with
    /// --ids-from-field a field of each JSON line. Import never replaces a
    /// row already in the database unless given --replace: a row whose id is
    /// present stops it with an error that names the row and the id and
    /// gives the commands that add the rows after the ids present
    /// (--id-offset) or overwrite them (--replace). A JSON line's "payload"
    /// is stored as written: a string as its text, anything else as its JSON
    /// text byte for byte.
    ///
    /// Every completed batch is committed. An error, Ctrl-C or SIGTERM ends
    /// the import with the command that resumes it (--start ROW, with the
    /// same options); when a row of the file is bad, the error names it, to
    /// be fixed before resuming.
    Import(commands::ImportArgs),
    /// Find the nearest neighbours of the vectors in a query file.
    Search(commands::SearchArgs),
    /// Print the vector and payload stored under an id.
    Get(commands::GetArgs),
    /// Delete ids, in one commit.
    Delete(commands::DeleteArgs),
    /// Segments, rows and bytes of a database.
    Stats(commands::StatsArgs),
    /// Check every checksum and that the manifest and the files agree; exits
    /// 3 and names each bad file if anything is wrong.
    Verify(commands::VerifyArgs),
    /// Rewrite the directory into fewer, cleaner segments (offline: takes
    /// the directory's lock for the whole run).
    Compact(compact::CompactArgs),
    /// Measure recall, queries per second and latency per ef and thread count.
    Bench(bench::BenchArgs),
    /// Build a database from a generated data set, search it, reopen it, and
    /// print what it did with timings.
    Demo(demo::DemoArgs),
}

impl Command {
    /// The database directory the command works on, if it names one.
    fn dir(&self) -> Option<&Path> {
        match self {
            Command::Create(a) => Some(&a.dir),
            Command::Import(a) => Some(&a.dir),
            Command::Search(a) => Some(&a.dir),
            Command::Get(a) => Some(&a.dir),
            Command::Delete(a) => Some(&a.dir),
            Command::Stats(a) => Some(&a.dir),
            Command::Verify(a) => Some(&a.dir),
            Command::Compact(a) => Some(&a.dir),
            Command::Bench(a) => a.dir.as_deref(),
            Command::Demo(a) => a.dir.as_deref(),
        }
    }
}

/// How a command ended, when it did not fail outright.
pub enum Outcome {
    /// All good: exit 0.
    Done,
    /// `verify` found damage (already reported): exit 3.
    Damaged,
}

/// What kind of failure ended a command: it sets the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 1: the id asked for is not in the database.
    NotFound,
    /// 2: bad input, or another failure.
    Failed,
    /// 3: a file of the database failed its checks.
    Damaged,
    /// 130: Ctrl-C or SIGTERM.
    Interrupted,
}

impl Exit {
    /// The kind of `e`: from the library's error variant, or what a
    /// [`Failure`] says.
    pub fn of(e: &(dyn std::error::Error + 'static)) -> Exit {
        if let Some(f) = e.downcast_ref::<Failure>() {
            return f.exit;
        }
        match e.downcast_ref::<quiver::Error>() {
            Some(quiver::Error::Corrupted { .. }) => Exit::Damaged,
            _ => Exit::Failed,
        }
    }

    fn code(self) -> u8 {
        match self {
            Exit::NotFound => 1,
            Exit::Failed => 2,
            Exit::Damaged => 3,
            Exit::Interrupted => 130,
        }
    }
}

/// An error message with its kind, for failures the commands word
/// themselves (advice added to a library error, an unknown id).
#[derive(Debug)]
pub struct Failure {
    /// The kind, and so the exit code.
    pub exit: Exit,
    /// The whole one-line message.
    pub message: String,
}

impl Failure {
    /// A failure of kind `exit`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Failure {
        Failure {
            exit,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// A command's result; an error becomes one line on stderr and the exit code
/// of its [`Exit`] kind.
pub type CliResult = Result<Outcome, Box<dyn std::error::Error>>;

/// Checks a command-line value against its range (`max` `usize::MAX` for
/// none); the error names the flag and states the range, in the words of the
/// library's [`quiver::Error::OutOfRange`].
pub fn check_flag(flag: &str, value: usize, min: usize, max: usize) -> Result<(), Failure> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    let allowed = if max == usize::MAX {
        format!("at least {min}")
    } else {
        format!("between {min} and {max}")
    };
    Err(Failure::new(
        Exit::Failed,
        format!("{flag} is {value}: it must be {allowed}"),
    ))
}

/// What to do about a damaged database in `dir`.
fn damage_advice(dir: Option<&Path>) -> String {
    let dir = dir.map_or_else(|| "DIR".to_owned(), |d| d.display().to_string());
    format!(
        "run `quiver verify {dir}` to list every damaged file, then restore the directory from a backup"
    )
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let dir = cli.command.dir().map(Path::to_path_buf);
    let outcome = match cli.command {
        Command::Create(args) => commands::create(&args),
        Command::Import(args) => commands::import(&args),
        Command::Search(args) => commands::search(&args),
        Command::Get(args) => commands::get(&args),
        Command::Delete(args) => commands::delete(&args),
        Command::Stats(args) => commands::stats(&args),
        Command::Verify(args) => commands::verify(&args),
        Command::Compact(args) => compact::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Demo(args) => demo::run(&args).map(|()| Outcome::Done),
    };
    match outcome {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Damaged) => {
            eprintln!(
                "quiver: the files named above are damaged: restore the directory from a backup"
            );
            ExitCode::from(Exit::Damaged.code())
        }
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            let exit = Exit::of(&*e);
            if exit == Exit::Damaged {
                eprintln!("quiver: {e}; {}", damage_advice(dir.as_deref()));
            } else {
                eprintln!("quiver: {e}");
            }
            ExitCode::from(exit.code())
        }
    }
}
