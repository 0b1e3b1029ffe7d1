//! The command line, as ../shared/CLI.md fixes it.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "isotrace",
    version,
    about = "Run unmodified programs under a ptrace + seccomp supervisor: isolation, checkpoint/restore, migration, forensics",
    long_about = "Run unmodified programs under a ptrace + seccomp supervisor.\n\n\
        `isotrace [RUN-FLAGS] -- CMD [ARGS...]` is the same as `isotrace run [RUN-FLAGS] -- CMD [ARGS...]`.\n\n\
        Exit status: CMD's first process's status (128+S if killed by signal S); \
        125 for isotrace's own errors (bad usage or configuration), 126 if CMD cannot be executed, 127 if CMD is not found.",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Args, Debug, Default)]
pub struct RunArgs {
    /// Run in the persistent isolated environment NAME, creating it if needed.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["rm", "no_isolation"])]
    pub env: Option<String>,
    /// Run in a throwaway environment deleted when the group exits.
    #[arg(long, conflicts_with = "no_isolation")]
    pub rm: bool,
    /// Supervise and trace only: no environment, paths pass through untouched.
    #[arg(long)]
    pub no_isolation: bool,
    /// The application group's name (default: the environment's name; with
    /// --no-isolation or --rm, CMD's file name and the supervisor's pid).
    /// It must be unique among running groups; the group's control socket
    /// is $XDG_RUNTIME_DIR/isotrace/NAME.sock (docs/API.md).
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    #[command(flatten)]
    pub out: TraceFlags,
    /// With an environment: when the group exits, print what it changed
    /// (`env diff` lines: A/M/D PATH) to stderr, before a --rm environment
    /// is deleted.
    #[arg(long, conflicts_with = "no_isolation")]
    pub diff: bool,
    /// Checkpoint the group periodically (e.g. 30s).
    #[arg(long, value_name = "DURATION")]
    pub checkpoint_every: Option<String>,
    /// Where checkpoints of this group go by default, each in
    /// GROUP-TIMESTAMP (default: $ISOTRACE_HOME/checkpoints). SIGUSR2 sent
    /// to the supervisor (its pid is in `isotrace ps`) writes a checkpoint
    /// there and lets the group run on.
    #[arg(long, value_name = "DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// SIGPWR sent to the supervisor (`kill -PWR SUPERVISOR_PID`) migrates
    /// the group into a new environment NAME on this host, as `isotrace
    /// migrate GROUP --to-env NAME` would.
    #[arg(long, value_name = "NAME", conflicts_with = "migrate_to")]
    pub migrate_to_env: Option<String>,
    /// SIGPWR sent to the supervisor migrates the group to `isotrace
    /// receive` at HOST:PORT (token: --migrate-token-file, else
    /// $ISOTRACE_MIGRATE_TOKEN, checked at start).
    #[arg(long, value_name = "HOST:PORT")]
    pub migrate_to: Option<String>,
    /// The shared token file for --migrate-to.
    #[arg(long, value_name = "FILE", requires = "migrate_to")]
    pub migrate_token_file: Option<PathBuf>,
    /// The SIGPWR migration copies memory while the group runs first
    /// (`migrate --pre-copy`).
    #[arg(long)]
    pub migrate_pre_copy: bool,
    /// The program and its arguments.
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<std::ffi::OsString>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run CMD under the supervisor (the default verb).
    ///
    /// Signals to the supervisor: SIGTERM, SIGHUP and SIGUSR1 are passed on
    /// to CMD's first process; SIGUSR2 (`kill -USR2 SUPERVISOR_PID`, the pid
    /// `isotrace ps` shows) writes a checkpoint of the group into
    /// --checkpoint-dir (default $ISOTRACE_HOME/checkpoints), in
    /// GROUP-TIMESTAMP, and lets the group run on; SIGPWR, with
    /// --migrate-to-env or --migrate-to, migrates the group there.
    Run(RunArgs),
    /// Put a running process (and the threads and children it creates from
    /// now on) under the supervisor, as if `run` had started it: trace it,
    /// report its accesses, checkpoint it. No isolation: its files and fds
    /// are the host's. The seccomp filter cannot be taken off again, so the
    /// process stays supervised until it exits, and ends if isotrace is
    /// killed. It exits with the process's status.
    Attach(AttachArgs),
    /// Manage isolated environments (create, list, show, copy, rm, export, import, diff).
    Env(crate::envcmd::args::EnvArgs),
    /// Show or set configuration: the merged settings in force and where
    /// each comes from; per-env and per-app overrides.
    Config(crate::configcmd::ConfigArgs),
    /// Global exceptions: paths that stay public in every environment.
    Rules(crate::rulescmd::RulesArgs),
    /// List running application groups: name, env, supervisor pid,
    /// processes, threads, RSS, uptime.
    Ps(PsArgs),
    /// Checkpoint a running group: freeze it, write an image, then stop it
    /// (default) or let it run on (--leave-running).
    Checkpoint(CheckpointArgs),
    /// Restore an image: a group checkpoint comes back as a group, under a
    /// supervisor, in its environment (or --env); a snapshot of a process
    /// not run under isotrace comes back natively. Every process and thread
    /// keeps its pid (a new pid namespace) unless --new-pids.
    Restore(RestoreArgs),
    /// Live-migrate a running group to another environment on this host
    /// (--to-env) or to another host (--to, answered by `isotrace receive`).
    Migrate(MigrateArgs),
    /// Receive migrated or cloned groups: listen, check, restore, confirm.
    Receive(ReceiveArgs),
    /// Start a second copy of a running group; the original runs on.
    Clone(CloneArgs),
    /// Snapshot any process you may ptrace (forensics): a short pause, then it runs on.
    Snapshot(SnapshotArgs),
    /// Inspect an image: processes, threads, registers, maps, fds, sockets.
    Inspect(InspectArgs),
    /// Write an ELF core file from an image, for gdb.
    Core(CoreArgs),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
#[command(
    after_help = "Groups are found through their control sockets in $XDG_RUNTIME_DIR/isotrace/ \
        (the API of docs/API.md); sockets left by a supervisor that died are removed."
)]
pub struct PsArgs {
    /// Print a JSON array of the groups' `status` objects (docs/API.md);
    /// with --all, an object with `groups` and `processes`.
    #[arg(long)]
    pub json: bool,
    /// Also list every process `isotrace snapshot` could take: those you
    /// may ptrace, with whether one is already traced (and by what).
    #[arg(long)]
    pub all: bool,
}

#[derive(Args, Debug)]
#[command(
    after_help = "By default the group is stopped once the image is written (checkpoint-terminate, \
        as CRIU does): its `isotrace run` exits with 137 (128+SIGKILL). A checkpoint that fails \
        (an fd that cannot be dumped, a process that died meanwhile) leaves no image and the \
        group runs on. `isotrace restore IMAGE` brings a checkpointed process back."
)]
pub struct CheckpointArgs {
    /// The running group (see `isotrace ps`).
    #[arg(value_name = "GROUP")]
    pub group: String,
    /// The image directory to create (it must not exist). Default:
    /// the run's --checkpoint-dir, else $ISOTRACE_HOME/checkpoints, in GROUP-TIMESTAMP.
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Let the group run on after the checkpoint.
    #[arg(long)]
    pub leave_running: bool,
    /// Record established TCP connections as closed instead of carrying
    /// them with TCP repair (which needs CAP_NET_ADMIN): the restored
    /// program finds them not connected.
    #[arg(long)]
    pub tcp_close: bool,
    /// Print the result and per-phase times as JSON (docs/API.md, `checkpoint`).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SnapshotArgs {
    /// The process to snapshot. It must not be traced already.
    #[arg(value_name = "PID")]
    pub pid: i32,
    /// The image directory to create (it must not exist).
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: PathBuf,
    /// Also snapshot every descendant of PID.
    #[arg(long)]
    pub tree: bool,
    /// How the pause's memory is kept while the process runs on.
    #[arg(long, value_enum, value_name = "METHOD", default_value = "auto")]
    pub method: SnapshotMethod,
}

/// `snapshot --method`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotMethod {
    /// uffd where the kernel and the process allow it, else fork (and fork
    /// again if the process's munmap/mremap/madvise spoilt the uffd copy).
    Auto,
    /// Write-protect its memory with a userfaultfd and copy each page
    /// before its first write: a pause that hardly grows with memory.
    Uffd,
    /// Fork a copy-on-write child of it: the pause grows with its memory
    /// (page-table copy).
    Fork,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The image directory (from `isotrace snapshot` or `checkpoint`).
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// Restore into the isolated environment NAME (created if missing). A
    /// group checkpoint comes back in its own environment by default.
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    /// The application group's name (default: the checkpointed group's).
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    /// Exit once the group runs (its supervisor in a session of its own)
    /// instead of waiting for it.
    #[arg(long)]
    pub detach: bool,
    /// Give the restored processes new pids instead of the image's (which
    /// need a new pid namespace).
    #[arg(long)]
    pub new_pids: bool,
    /// Restore the processes without a supervisor (a snapshot's default).
    #[arg(long, conflicts_with_all = ["env", "group"])]
    pub native: bool,
    /// Internal (a migration's receiver): FIFOs in DIR say when the copy
    /// is restored (`ready`), when it may run (`go`) and that it runs.
    #[arg(long, value_name = "DIR", hide = true, conflicts_with_all = ["native", "detach"])]
    pub control: Option<PathBuf>,
}

/// `inspect IMAGE ps|fds|mems|sockets`: one part of the image.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum InspectView {
    /// Processes and their threads, with registers.
    Ps,
    /// Open file descriptors with their kinds and targets.
    Fds,
    /// Memory mappings with sizes, flags and what was captured.
    Mems,
    /// Sockets with addresses and states.
    Sockets,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// The image directory.
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// Show only one part of the image.
    #[arg(value_enum, value_name = "VIEW")]
    pub view: Option<InspectView>,
    /// Print JSON (schema "isotrace-inspect", documented in checkpoint/IMAGE.md).
    #[arg(long)]
    pub json: bool,
    /// Hexdump LEN bytes of memory from ADDR (hex with 0x, or decimal).
    #[arg(long, num_args = 2, value_names = ["ADDR", "LEN"], conflicts_with_all = ["view", "json"])]
    pub dump_memory: Option<Vec<String>>,
    /// The process whose memory --dump-memory reads (default: the image's first).
    #[arg(long, value_name = "PID")]
    pub pid: Option<i32>,
}

#[derive(Args, Debug)]
pub struct CoreArgs {
    /// The image directory.
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// The process to write a core of (default: the image's first).
    #[arg(long, value_name = "PID")]
    pub pid: Option<i32>,
    /// The core file to write.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
}

const MIGRATE_HELP: &str = "The group is frozen, dumped and streamed over one TCP connection \
    with its environment's private layer (unless the destination sees the same store); the \
    destination restores it, and only once it says the copy runs is the source group killed. Any \
    failure before that (receiver gone, connection dropped, a CPU feature missing there, restore \
    refused) resumes the group unharmed, and the error says what happened. The downtime (freeze \
    to running on the destination) and the mode used are printed.\n\n\
    Authentication (--to): both ends hold the same token, from --token-file FILE (first line) \
    or $ISOTRACE_MIGRATE_TOKEN, at least 16 characters. Every frame carries an HMAC-SHA256 keyed \
    from it and fresh nonces of both ends, so a peer without the token is rejected and a \
    modified, replayed or truncated stream is refused; the token never crosses the network. \
    The stream is not encrypted: use a trusted network or a tunnel. --to-env uses a fresh \
    random token over 127.0.0.1.\n\n\
    The copy is restored as `isotrace restore` restores a group checkpoint: every process and \
    thread with its pids (in a pid namespace of its own), under a supervisor of its own, \
    isolated in the destination environment, as a group `isotrace ps` lists. On this host the \
    copy's group takes the destination environment's name (the source holds its own until the \
    copy runs).";

#[derive(Args, Debug)]
pub struct AttachArgs {
    /// The process to attach to (one you may ptrace, not traced already).
    #[arg(value_name = "PID")]
    pub pid: i32,
    /// The application group's name (default: attach-PID).
    #[arg(long, value_name = "NAME")]
    pub group: Option<String>,
    #[command(flatten)]
    pub out: TraceFlags,
}

/// What a supervised group reports, for `run` and `attach` alike.
#[derive(Args, Debug, Clone, Default)]
pub struct TraceFlags {
    /// Print every trapped syscall strace-style to stderr.
    #[arg(long)]
    pub trace: bool,
    /// Write the --trace lines to FILE instead of stderr (implies --trace).
    #[arg(long, value_name = "FILE")]
    pub trace_file: Option<PathBuf>,
    /// When the group exits, write a JSON access report to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// On exit, print the supervisor's counters and peak RSS to stderr.
    #[arg(long)]
    pub stats: bool,
}

#[derive(Args, Debug)]
#[command(after_help = MIGRATE_HELP)]
#[command(group(clap::ArgGroup::new("dest").args(["to_env", "to"])))]
pub struct MigrateArgs {
    /// The running group (see `isotrace ps`).
    #[arg(value_name = "GROUP")]
    pub group: String,
    /// Move the group into a new environment NAME on this host (its
    /// private layer is a copy of the group's environment).
    #[arg(long, value_name = "NAME")]
    pub to_env: Option<String>,
    /// Move the group to `isotrace receive` at HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub to: Option<String>,
    /// Copy memory while the group runs, tracking dirtied pages, then
    /// freeze and send the rest. Says which mode ran.
    #[arg(long)]
    pub pre_copy: bool,
    /// With --to: the environment the group runs in on the destination
    /// (default: its name here).
    #[arg(long, value_name = "NAME", requires = "to")]
    pub env: Option<String>,
    /// Read the shared token from FILE instead of $ISOTRACE_MIGRATE_TOKEN.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Close established TCP connections instead of carrying them with
    /// TCP repair (which needs CAP_NET_ADMIN).
    #[arg(long)]
    pub tcp_close: bool,
    /// Run PROGRAM at each phase of the move, with the phase in
    /// $ISOTRACE_ACTION (network-lock, pre-resume, network-unlock): what
    /// moves the service address to the destination host (README, "TCP
    /// connections").
    #[arg(long, value_name = "PROGRAM")]
    pub action_script: Option<PathBuf>,
    /// Print the result (times, bytes, destination pids) as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(after_help = MIGRATE_HELP)]
#[command(group(clap::ArgGroup::new("dest").args(["to_env", "to"])))]
pub struct CloneArgs {
    /// The running group (see `isotrace ps`).
    #[arg(value_name = "GROUP")]
    pub group: String,
    /// Start the copy in a new environment NAME on this host.
    #[arg(long, value_name = "NAME")]
    pub to_env: Option<String>,
    /// Start the copy at `isotrace receive` on HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub to: Option<String>,
    /// With --to: the copy's environment there (default: the group's name
    /// for it here).
    #[arg(long, value_name = "NAME", requires = "to")]
    pub env: Option<String>,
    /// Read the shared token from FILE instead of $ISOTRACE_MIGRATE_TOKEN.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The group's listening TCP ports and bound UDP ports when the copy
    /// is on this host (one network namespace): `share` sets SO_REUSEPORT
    /// on the original's sockets and the copy's, so both serve the port
    /// and the kernel spreads new connections (and datagrams, by source
    /// address) over them (refused, naming the port, for a socket of
    /// another uid); `refuse` does not clone a group that listens or has
    /// a bound UDP port. Ignored for --to another host.
    #[arg(long, value_enum, value_name = "POLICY", default_value = "share")]
    pub ports: ClonePorts,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `clone --ports`: see `CloneArgs::ports`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClonePorts {
    /// Both copies listen on the port, with SO_REUSEPORT.
    Share,
    /// A group with a listening TCP socket is not cloned on this host.
    Refuse,
}

#[derive(Args, Debug)]
#[command(after_help = MIGRATE_HELP)]
pub struct ReceiveArgs {
    /// The address to listen on, e.g. 0.0.0.0:7070 (port 0: any free port,
    /// printed on stderr).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: String,
    /// Run received groups in environment NAME (default: the name the
    /// sender asks for, else the group's environment name there). It must
    /// not exist, unless it is the sender's own environment on a shared
    /// store.
    #[arg(long, value_name = "NAME")]
    pub env: Option<String>,
    /// Exit after the first stream (status 0 if its copy runs).
    #[arg(long)]
    pub once: bool,
    /// Read the shared token from FILE instead of $ISOTRACE_MIGRATE_TOKEN.
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Print one JSON line per received group on stdout.
    #[arg(long)]
    pub json: bool,
}
