//! Issue #5, a checkpoint's pages written to a filesystem with blocks
//! (ext4 on a loop device, so its size is known): the write thread
//! allocates the file's blocks ahead of its writes (fallocate, 64 MiB at
//! a time). A filesystem with less room than that step still takes an
//! image that fits; one that is too small fails the checkpoint with
//! ENOSPC, leaves nothing, and the group runs on; and no image keeps
//! blocks allocated past its data.

mod common;

use common::{guest, path_str, wait_for_pid, wait_until};
use isotrace_checkpoint::Image;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// An ext4 filesystem of `mib` MiB on a loop device, unmounted on drop.
struct Ext4 {
    mnt: PathBuf,
}

impl Ext4 {
    /// None when this host cannot make one (not root, no mkfs.ext4, no
    /// loop devices).
    fn new(dir: &Path, mib: u64) -> Option<Ext4> {
        if !common::is_root() {
            return None;
        }
        let img = dir.join("fs.img");
        fs::File::create(&img)
            .and_then(|f| f.set_len(mib << 20))
            .unwrap();
        let ok = |cmd: &mut Command| cmd.status().is_ok_and(|s| s.success());
        let mnt = dir.join("mnt");
        fs::create_dir(&mnt).unwrap();
        let made = ok(Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&img)
            .stdout(Stdio::null())
            .stderr(Stdio::null()));
        if !made
            || !ok(Command::new("mount")
                .args(["-o", "loop"])
                .arg(&img)
                .arg(&mnt))
        {
            return None;
        }
        Some(Ext4 { mnt })
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
    }
}

/// A background `isotrace run --no-isolation --group GROUP -- snap_rss
/// DIR MIB`, SIGKILLed with its tracee when the test ends.
struct Group {
    child: Child,
    name: String,
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct World {
    tmp: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["home", "run", "guest"] {
            fs::create_dir(tmp.path().join(d)).unwrap();
        }
        World { tmp }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(common::isotrace());
        cmd.args(args)
            .current_dir(self.dir())
            .env("ISOTRACE_HOME", self.dir().join("home"))
            .env("XDG_RUNTIME_DIR", self.dir().join("run"))
            .stdin(Stdio::null());
        cmd
    }

    /// A group holding `mib` MiB of touched anonymous memory.
    fn hold(&self, name: &str, mib: u64) -> Group {
        let dir = self.dir().join("guest").join(name);
        fs::create_dir(&dir).unwrap();
        let exe = guest("snap_rss");
        let mib = mib.to_string();
        let args = [
            "run",
            "--no-isolation",
            "--group",
            name,
            "--",
            path_str(&exe),
            path_str(&dir),
            &mib,
        ];
        let child = self
            .command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn isotrace");
        let group = Group {
            child,
            name: name.into(),
        };
        wait_for_pid(&dir.join("pid"), WAIT);
        let sock = self.dir().join("run/isotrace").join(format!("{name}.sock"));
        wait_until("the group's socket", WAIT, || {
            UnixStream::connect(&sock).is_ok()
        });
        group
    }

    /// `isotrace checkpoint GROUP -o IMG --leave-running`: exit code and
    /// stderr.
    fn checkpoint(&self, group: &Group, img: &Path) -> (i32, String) {
        let mut cmd = self.command(&[
            "checkpoint",
            &group.name,
            "-o",
            path_str(img),
            "--leave-running",
        ]);
        let (status, _, stderr) = common::execute(&mut cmd, None, WAIT, None);
        (
            status.shell_code(),
            String::from_utf8_lossy(&stderr).into_owned(),
        )
    }
}

/// Every pages file of the image at `img`: its length, and the bytes its
/// blocks take on disk.
fn pages_files(img: &Path) -> Vec<(String, u64, u64)> {
    fs::read_dir(img)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pages"))
        .map(|e| {
            let m = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                m.len(),
                m.blocks() * 512,
            )
        })
        .collect()
}

/// 48 MiB of ext4 (about 40 free), less than one 64 MiB allocation step:
/// the checkpoint of 24 MiB still fits and verifies, and its pages file
/// holds no blocks past its data.
#[test]
fn a_disk_with_less_room_than_an_allocation_step_takes_an_image_that_fits() {
    let w = World::new();
    let Some(fs) = Ext4::new(w.dir(), 48) else {
        eprintln!("skipping: cannot mount an ext4 loop filesystem here");
        return;
    };
    let g = w.hold("fits", 24);
    let img = fs.mnt.join("img");
    let (code, stderr) = w.checkpoint(&g, &img);
    assert_eq!(code, 0, "{stderr}");
    // open checks every section's size and digest against the disk.
    Image::open(&img).unwrap();
    let pages = pages_files(&img);
    let total: u64 = pages.iter().map(|p| p.1).sum();
    assert!(total >= 24 << 20, "pages {pages:?}");
    for (name, len, on_disk) in &pages {
        assert!(
            *on_disk <= len.next_multiple_of(1 << 20),
            "{name}: {on_disk} bytes of blocks for {len} bytes"
        );
    }
}

/// A 256 MiB ext4, where the allocation ahead succeeds: a 100 MiB image
/// verifies, and the 64 MiB steps past its data were given back.
#[test]
fn blocks_allocated_ahead_are_given_back_past_the_data() {
    let w = World::new();
    let Some(fs) = Ext4::new(w.dir(), 256) else {
        eprintln!("skipping: cannot mount an ext4 loop filesystem here");
        return;
    };
    let g = w.hold("back", 100);
    let img = fs.mnt.join("img");
    let (code, stderr) = w.checkpoint(&g, &img);
    assert_eq!(code, 0, "{stderr}");
    Image::open(&img).unwrap();
    let pages = pages_files(&img);
    let (name, len, on_disk) = pages.iter().max_by_key(|p| p.1).expect("a pages file");
    assert!(*len >= 100 << 20, "pages {pages:?}");
    assert!(
        *on_disk <= len.next_multiple_of(1 << 20),
        "{name}: {on_disk} bytes of blocks for {len} bytes"
    );
}

/// A 32 MiB ext4 and 64 MiB of memory: the checkpoint fails with ENOSPC,
/// leaves nothing on the filesystem, and the group runs on (a second
/// checkpoint elsewhere succeeds).
#[test]
fn a_full_ext4_disk_fails_the_checkpoint_and_leaves_nothing() {
    let w = World::new();
    let Some(fs) = Ext4::new(w.dir(), 32) else {
        eprintln!("skipping: cannot mount an ext4 loop filesystem here");
        return;
    };
    let g = w.hold("full", 64);
    let img = fs.mnt.join("img");
    let (code, stderr) = w.checkpoint(&g, &img);
    assert_ne!(code, 0, "{stderr}");
    assert!(
        stderr.contains("No space left on device") || stderr.contains("ENOSPC"),
        "{stderr}"
    );
    assert!(!img.exists(), "a partial image at {}", img.display());
    let left: Vec<_> = fs::read_dir(&fs.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "lost+found")
        .collect();
    assert!(left.is_empty(), "left on the full filesystem: {left:?}");
    let again = w.dir().join("img2");
    let (code, stderr) = w.checkpoint(&g, &again);
    assert_eq!(code, 0, "the group after the failed checkpoint: {stderr}");
    Image::open(&again).unwrap();
}
