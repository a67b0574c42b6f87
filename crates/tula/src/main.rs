//! The `tula` binary: parses the command line and hands off to the crates.
//! Each subcommand lives in its own module under `cli/`.

mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let args = cli::Cli::parse();
    // `tula serve` sets up its own logging (--log-format).
    if !matches!(args.command, cli::Command::Serve(_)) {
        cli::init_logging(args.verbose);
    }
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
