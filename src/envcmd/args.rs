//! The `env` verbs of CLI.md, as clap sees them.

use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(
    after_help = "Environments live under $ISOTRACE_HOME (default: $XDG_DATA_HOME/isotrace, \
        else /var/lib/isotrace for root, else ~/.local/share/isotrace).\n\
        export, import and copy draw a progress bar on stderr when it is a terminal.\n\
        Exit status: 0 on success; 125 for a bad or unknown environment name or bad usage; \
        1 when an operation fails (I/O error, corrupt archive)."
)]
pub struct EnvArgs {
    #[command(subcommand)]
    pub verb: EnvVerb,
}

#[derive(Subcommand, Debug)]
pub enum EnvVerb {
    /// Create an empty environment (or, with --from, a copy of another).
    Create {
        #[arg(value_name = "NAME")]
        name: String,
        /// Copy the private layer of this existing environment.
        #[arg(long, value_name = "NAME")]
        from: Option<String>,
    },
    /// List environments, one name per line.
    List {
        /// Print JSON: {"version":1,"envs":[{"name","created","base","dir"}]}.
        #[arg(long)]
        json: bool,
    },
    /// Show an environment: base, size and file count of its private layer,
    /// running groups, rules in force.
    Show {
        #[arg(value_name = "NAME")]
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy environment SRC, with its own settings (`config set --env`),
    /// to a new environment DST. DST appears only once it is complete.
    /// Files are reflinked or hard-linked and copied on their first change;
    /// refused while a group runs in SRC, unless --force.
    Copy {
        #[arg(value_name = "SRC")]
        src: String,
        #[arg(value_name = "DST")]
        dst: String,
        /// Copy even while a group runs in SRC: every file is copied for
        /// real (a program may be writing through an fd opened earlier).
        #[arg(long)]
        force: bool,
    },
    /// Delete an environment and its private layer.
    Rm {
        #[arg(value_name = "NAME")]
        name: String,
        /// Delete even while a group runs in it: stop the group first
        /// (SIGTERM to its first process, SIGKILL to all after 5 s).
        #[arg(long)]
        force: bool,
    },
    /// Write a portable tar: the private layer as an OCI image layer
    /// (whiteouts `.wh.NAME`, opaque markers `.wh..wh..opq`), preceded by
    /// `isotrace-env.json` (the environment's metadata, the rules, and its
    /// own settings from `config set --env NAME`).
    Export {
        #[arg(value_name = "NAME")]
        name: String,
        /// The tar file to write (replaced atomically).
        #[arg(short = 'o', long = "output", value_name = "FILE.tar")]
        output: PathBuf,
    },
    /// Create an environment from a tar written by `env export`, with the
    /// settings it carries (a setting already made here for the new name
    /// is kept). Entries with absolute paths, `..`, or links out of the
    /// layer are refused; nothing is created unless the whole archive is
    /// valid.
    Import {
        #[arg(value_name = "FILE.tar")]
        file: PathBuf,
        /// The new environment's name (default: the exported one's).
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// What the environment added (A), changed (M) and deleted (D) relative
    /// to the host, like `git status --short`.
    Diff {
        #[arg(value_name = "NAME")]
        name: String,
        /// Print JSON: {"version":1,"env":NAME,"changes":[{"status","path","kind"}]}.
        #[arg(long)]
        json: bool,
    },
}
