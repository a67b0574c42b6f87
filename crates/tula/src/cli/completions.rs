//! `tula completions SHELL` and `tula man`: generated from the command-line model.

use clap::{Args, CommandFactory};
use clap_complete::Shell;
use std::process::ExitCode;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    shell: Shell,
}

/// Prints a completion script, e.g. `tula completions bash > /etc/bash_completion.d/tula`.
pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = super::Cli::command();
    clap_complete::generate(args.shell, &mut command, "tula", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// Prints the man page (roff), e.g. `tula man > /usr/local/share/man/man1/tula.1`.
pub fn man() -> anyhow::Result<ExitCode> {
    let command = super::Cli::command();
    clap_mangen::Man::new(command).render(&mut std::io::stdout())?;
    Ok(ExitCode::SUCCESS)
}
