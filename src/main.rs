//! The `isotrace` command.

mod attach;
mod checkpoint_cmd;
mod cli;
mod configcmd;
mod envcmd;
mod envs;
mod forensics;
mod isolate;
mod migrate;
mod ps;
mod report;
mod restore;
mod restore_group;
mod rulescmd;
mod run;
mod trace;

use clap::{CommandFactory, Parser};
use cli::{Cli, Command};

/// isotrace's own errors: bad usage or configuration (CLI.md).
pub const EXIT_USAGE: i32 = 125;

fn main() {
    // Before any supervisor settles on one CPU: the image's helper
    // threads run beside it (checkpoint/src/sys/cpus.rs).
    isotrace_checkpoint::remember_cpus();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => 0,
                _ => EXIT_USAGE,
            };
            if code == 0 {
                let _ = e.print();
            } else {
                // One line naming what is wrong (CLI.md), not clap's essay.
                let text = e.render().to_string();
                let first = text.lines().next().unwrap_or("invalid usage");
                let first = first.trim_start_matches("error: ");
                eprintln!("isotrace: {first} (see isotrace --help)");
            }
            std::process::exit(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ISOTRACE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    let code = match cli.command {
        None => run::main(cli.run),
        Some(Command::Run(args)) => run::main(args),
        Some(Command::Attach(args)) => attach::main(args),
        Some(Command::Env(args)) => envcmd::main(args),
        Some(Command::Config(args)) => configcmd::main(args),
        Some(Command::Rules(args)) => rulescmd::main(args),
        Some(Command::Ps(args)) => ps::main(args),
        Some(Command::Checkpoint(args)) => checkpoint_cmd::main(args),
        Some(Command::Snapshot(args)) => forensics::snapshot(args),
        Some(Command::Restore(args)) => restore::main(args),
        Some(Command::Inspect(args)) => forensics::inspect(args),
        Some(Command::Core(args)) => forensics::core(args),
        Some(Command::Migrate(args)) => migrate::migrate(args),
        Some(Command::Clone(args)) => migrate::clone(args),
        Some(Command::Receive(args)) => migrate::receive(args),
        Some(Command::Completions { shell }) => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "isotrace",
                &mut std::io::stdout(),
            );
            0
        }
    };
    std::process::exit(code);
}
