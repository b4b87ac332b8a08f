//! `hcr`: run, watch and inspect hot-reloadable images.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Hot code reloading for native programs.
#[derive(Parser, Debug)]
#[command(name = "hcr", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Describe an image: modules, import tree, symbols, timestamps, load plan.
    Inspect {
        /// The image.
        image: PathBuf,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Load an image and run its root module's `main`.
    Run {
        /// The image.
        image: PathBuf,
        /// Arguments for `main` (after `--`).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Print the compiler flags modules need.
    Flags,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect { image, json } => {
            hcr_tools::inspect::run(&image, json, &mut std::io::stdout().lock())
        }
        Command::Run { image, args } => match hcr_tools::run::run(&image, &args) {
            Ok(code) => {
                // Leave through libc's exit so the program's stdio is flushed.
                std::process::exit(code);
            }
            Err(e) => Err(e),
        },
        Command::Flags => {
            println!("{}", hcr_tools::FLAGS);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hcr: {e:#}");
            ExitCode::from(2)
        }
    }
}
