//! Starting the copy on the destination. `isotrace restore --control`
//! (restore.rs, restore_group.rs) rebuilds the image's processes with their
//! pids from the image in a new pid namespace (#5), puts them under a
//! supervisor of the kind that dumped them (isolated in the destination's
//! environment, or trace-only), and holds them stopped until this receiver
//! says go; the receiver says go only when the source says Go.

/// The copy restored by `isotrace restore --control` (restore.rs), which
/// puts it under a supervisor, in its environment, as a group: the
/// isolation holds on the destination as it did on the source. It runs as
/// a process of its own, in a session of its own, so that it outlives this
/// receiver; the two speak through FIFOs in a directory of the staging
/// area.
pub struct Supervised {
    child: std::process::Child,
    ctl: std::path::PathBuf,
    ready: std::fs::File,
    /// Bytes read from `ready` past the last line taken.
    unread: Vec<u8>,
    pub pids: Vec<i32>,
    /// The copy runs with pages left to post-copy (`running post-copy`).
    pub post_copy: bool,
    /// How held pre-copy pages were filled: `eager`, `post-copy`, or
    /// empty (none held).
    pub fill: String,
}

/// How long the copy's post-copy may take to fill every page.
const POST_COPY_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

/// How long the supervised restore may take to say it is ready.
const RESTORE_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Restores the image at `dir` under a supervisor (in env `env`), stopped
/// until [`Supervised::go`]. The group keeps its name, or (on this host,
/// where the source still holds it) takes its environment's
/// (restore_group.rs).
pub fn supervised(dir: &std::path::Path, env: Option<&str>) -> Result<Supervised, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let ctl = dir.with_file_name("control");
    std::fs::create_dir_all(&ctl).map_err(|e| format!("{}: {e}", ctl.display()))?;
    for fifo in ["ready", "go"] {
        let p = ctl.join(fifo);
        let _ = std::fs::remove_file(&p);
        nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| format!("{}: {e}", p.display()))?;
    }
    // Open for reading first, so that the restore's non-blocking writes
    // find a reader.
    let ready = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(ctl.join("ready"))
        .map_err(|e| format!("{}: {e}", ctl.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("isotrace's own path: {e}"))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("restore").arg(dir).arg("--control").arg(&ctl);
    if let Some(env) = env {
        cmd.args(["--env", env]);
    }
    // The copy's stdio to outside its image is not this receiver's.
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let child = cmd
        .spawn()
        .map_err(|e| format!("starting the supervised restore: {e}"))?;
    let mut s = Supervised {
        child,
        ctl,
        ready,
        unread: Vec::new(),
        pids: Vec::new(),
        post_copy: false,
        fill: String::new(),
    };
    let line = s.next_line(RESTORE_WAIT)?;
    match line.strip_prefix("ready ") {
        Some(pids) => {
            s.pids = pids.split(',').filter_map(|p| p.parse().ok()).collect();
            Ok(s)
        }
        None => {
            let why = line.strip_prefix("failed ").unwrap_or(&line).to_string();
            s.kill();
            Err(format!("restore refused: {why}"))
        }
    }
}

impl Supervised {
    /// The restore's next line on `ready`, or why there is none.
    fn next_line(&mut self, within: std::time::Duration) -> Result<String, String> {
        use std::io::Read;
        let deadline = std::time::Instant::now() + within;
        let got = &mut self.unread;
        let mut buf = [0u8; 4096];
        loop {
            match self.ready.read(&mut buf) {
                Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("the supervised restore: {e}")),
            }
            if let Some(end) = got.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&got[..end]).into_owned();
                got.drain(..=end);
                return Ok(line);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the supervised restore ended ({status}) before it was ready"
                ));
            }
            if std::time::Instant::now() >= deadline {
                return Err(format!(
                    "the supervised restore said nothing within {within:?}"
                ));
            }
            crate::restore::wait_readable(&self.ready, std::time::Duration::from_millis(20));
        }
    }

    /// Lets the copy run; returns once its supervisor says it runs.
    pub fn go(&mut self) -> Result<(), String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.ctl.join("go");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        writeln!(f, "go").map_err(|e| format!("{}: {e}", path.display()))?;
        drop(f);
        match self.next_line(RESTORE_WAIT)?.as_str() {
            "running" => Ok(()),
            "running eager" => {
                self.fill = "eager".into();
                Ok(())
            }
            "running post-copy" => {
                self.post_copy = true;
                self.fill = "post-copy".into();
                Ok(())
            }
            other => Err(format!("the supervised restore: {other}")),
        }
    }

    /// Once the copy runs with pages left (`post_copy`): its post-copy's
    /// statistics when every page is in (JSON), or why it failed.
    pub fn post_copied(&mut self) -> Result<String, String> {
        let line = self.next_line(POST_COPY_WAIT)?;
        match line.split_once(' ') {
            Some(("post-copied", json)) => Ok(json.to_string()),
            Some(("post-copy-failed", why)) => Err(why.to_string()),
            _ => Err(format!("the supervised restore: {line}")),
        }
    }

    /// Removes a copy that must not run: its restore (whose tracees die
    /// with it, PTRACE_O_EXITKILL, and whose pid namespace's init takes
    /// every process with it).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
