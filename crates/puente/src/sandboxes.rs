//! `puente sandbox <kind>`: one subcommand per sandbox in [`list`], built
//! from each sandbox crate's descriptor (its name, about text, arguments
//! and run function). Adding a sandbox is one line in `list`.

use std::process::ExitCode;

use anyhow::{anyhow, Result};
use clap::{ArgMatches, Args, Command, FromArgMatches};
use puente_sandbox_kit::cli::{dispatch, subcommands};
use puente_sandbox_kit::Descriptor;

/// Every sandbox the binary can run.
fn list() -> Vec<Descriptor> {
    vec![puente_hubspot_sandbox::descriptor()]
}

/// The sandbox chosen on the command line, with its arguments.
pub struct Choice(ArgMatches);

impl FromArgMatches for Choice {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        Ok(Choice(matches.clone()))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.0 = matches.clone();
        Ok(())
    }
}

impl Args for Choice {
    fn augment_args(cmd: Command) -> Command {
        subcommands(cmd, &list())
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Choice::augment_args(cmd)
    }
}

impl Choice {
    /// Runs the chosen sandbox until Ctrl-C.
    pub async fn run(self) -> Result<ExitCode> {
        dispatch(&list(), &self.0)?.await.map_err(|e| anyhow!(e))?;
        Ok(ExitCode::SUCCESS)
    }
}
