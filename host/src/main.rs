//! The `ironhost` binary: parse the command line, run it, exit with its code.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = ironhost::cli::Cli::parse();
    ironhost::cli::run(cli)
}
