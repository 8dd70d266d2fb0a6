//! `quiver`: the command line of the Quiver vector database.
//!
//! Every failure is one line on stderr, `quiver: <what went wrong>`, with exit
//! code 2 (bad arguments, files or databases), or 1 when `quiver verify` finds
//! damage. Work that takes more than a moment shows a progress bar on stderr
//! when it is a terminal.

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

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Quiver: an embedded, persistent vector database.
#[derive(Debug, Parser)]
#[command(name = "quiver", version, about)]
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
    /// 1 and names each bad file if anything is wrong.
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

/// How a command ended, when it did not fail outright.
pub enum Outcome {
    /// All good: exit 0.
    Done,
    /// `verify` found damage (already reported): exit 1.
    Damaged,
}

/// A command's result; an error becomes one line on stderr and exit code 2.
pub type CliResult = Result<Outcome, Box<dyn std::error::Error>>;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Ok(Outcome::Damaged) => ExitCode::from(1),
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("quiver: {e}");
            ExitCode::from(2)
        }
    }
}
