//! `quiver`: the command line of the Quiver vector database.

mod demo;

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
    /// Build a database from a generated data set, search it, reopen it, and
    /// print what it did with timings.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Demo(args) => demo::run(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quiver: {e}");
            ExitCode::from(2)
        }
    }
}
