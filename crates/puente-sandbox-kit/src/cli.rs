//! What a sandbox crate exposes so that `puente sandbox <kind>` can list
//! it: a [`Descriptor`] (its name, its about text, its own clap arguments,
//! its run function). The binary builds the `sandbox` subcommand from a
//! list of descriptors, so adding a sandbox is one line there.

use std::future::Future;
use std::pin::Pin;

use clap::{ArgMatches, Command, FromArgMatches};

/// Any error a sandbox's run function ends with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a sandbox's run function returns.
pub type Run = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// A sandbox's command-line arguments (`#[derive(clap::Args)]`), which know
/// how to run it.
pub trait SandboxCommand: clap::Args + FromArgMatches + Send + 'static {
    /// The subcommand: `puente sandbox NAME`.
    const NAME: &'static str;
    /// One line for `puente sandbox --help`.
    const ABOUT: &'static str;
    /// Runs the sandbox until it is stopped (Ctrl-C).
    fn run(self) -> Run;
}

/// One sandbox, as the binary lists it.
#[derive(Clone, Copy)]
pub struct Descriptor {
    name: &'static str,
    about: &'static str,
    augment: fn(Command) -> Command,
    run: fn(&ArgMatches) -> Result<Run, clap::Error>,
}

fn run_with<C: SandboxCommand>(matches: &ArgMatches) -> Result<Run, clap::Error> {
    Ok(C::from_arg_matches(matches)?.run())
}

impl Descriptor {
    /// The descriptor of the sandbox whose arguments are `C`.
    pub fn of<C: SandboxCommand>() -> Descriptor {
        Descriptor {
            name: C::NAME,
            about: C::ABOUT,
            augment: C::augment_args,
            run: run_with::<C>,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn about(&self) -> &'static str {
        self.about
    }

    /// Its subcommand, arguments included.
    pub fn command(&self) -> Command {
        (self.augment)(Command::new(self.name).about(self.about))
    }

    /// Runs it with the matches of its subcommand.
    pub fn run(&self, matches: &ArgMatches) -> Result<Run, clap::Error> {
        (self.run)(matches)
    }
}

/// Adds one subcommand per sandbox to `cmd`; one is then required, and
/// without one the help is shown.
pub fn subcommands(cmd: Command, sandboxes: &[Descriptor]) -> Command {
    let cmd = cmd.subcommand_required(true).arg_required_else_help(true);
    sandboxes
        .iter()
        .fold(cmd, |cmd, d| cmd.subcommand(d.command()))
}

/// The sandbox `matches` chose (the matches of the command that
/// [`subcommands`] built), ready to run.
pub fn dispatch(sandboxes: &[Descriptor], matches: &ArgMatches) -> Result<Run, clap::Error> {
    let Some((name, sub)) = matches.subcommand() else {
        return Err(clap::Error::new(clap::error::ErrorKind::MissingSubcommand));
    };
    match sandboxes.iter().find(|d| d.name == name) {
        Some(d) => d.run(sub),
        None => Err(clap::Error::new(clap::error::ErrorKind::InvalidSubcommand)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Args)]
    struct Echo {
        /// What to say.
        #[arg(long, default_value = "hello")]
        say: String,
    }

    impl SandboxCommand for Echo {
        const NAME: &'static str = "echo";
        const ABOUT: &'static str = "Says something";
        fn run(self) -> Run {
            Box::pin(async move {
                if self.say == "fail" {
                    Err("told to fail".into())
                } else {
                    Ok(())
                }
            })
        }
    }

    #[tokio::test]
    async fn a_list_of_descriptors_builds_and_dispatches_subcommands() {
        let list = [Descriptor::of::<Echo>()];
        let cmd = subcommands(Command::new("sandbox"), &list);
        let help = cmd.clone().render_help().to_string();
        assert!(
            help.contains("echo") && help.contains("Says something"),
            "{help}"
        );
        let m = cmd
            .clone()
            .try_get_matches_from(["sandbox", "echo"])
            .unwrap();
        dispatch(&list, &m).unwrap().await.unwrap();
        let m = cmd
            .clone()
            .try_get_matches_from(["sandbox", "echo", "--say", "fail"])
            .unwrap();
        let e = dispatch(&list, &m).unwrap().await.unwrap_err();
        assert_eq!(e.to_string(), "told to fail");
        assert!(cmd.clone().try_get_matches_from(["sandbox"]).is_err());
        assert!(cmd.try_get_matches_from(["sandbox", "zoho"]).is_err());
    }
}
