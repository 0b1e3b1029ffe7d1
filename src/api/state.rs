//! The supervisor's own state that a checkpoint carries (#5): which group
//! it was, whether and where it was isolated, and how it was traced. The
//! image section `supervisor.json` holds it as plain versioned JSON, so
//! that `isotrace restore` puts the processes back under a supervisor of
//! the same kind, in the same environment (or the one `--env` names), and
//! can translate the private paths the kernel reported at dump time back
//! to public ones.

use isotrace_checkpoint::Image;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The image section that holds a [`SupervisorState`].
pub const SECTION: &str = "supervisor.json";
/// Bumped when a field changes meaning; new optional fields do not bump it.
pub const VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorState {
    pub version: u32,
    /// The application group's name.
    pub group: String,
    /// `isolated`, `throwaway` or `no-isolation` (as `isotrace ps` shows).
    pub mode: String,
    /// The environment's name, when isolated.
    #[serde(default)]
    pub env: Option<String>,
    /// The environment's private layer at dump time: paths under it in the
    /// image (fd targets, file mappings, cwd, exe) are private names of
    /// public paths.
    #[serde(default)]
    pub upper: Option<PathBuf>,
    /// Whether `--trace` was on.
    #[serde(default)]
    pub trace: bool,
    /// The IDB rules in force for the group at dump time (global
    /// exceptions plus the env's and the program's), as `isotrace rules`
    /// stores them; a restore elsewhere can compare them with its own.
    #[serde(default)]
    pub rules: Option<serde_json::Value>,
    /// Whether the group ran with a read-only host (its own mount
    /// namespace, fd-based metadata calls untrapped). A restore always
    /// runs with every trap, which is correct for either: the restored
    /// processes reopen their files in the restore's own namespace.
    #[serde(default)]
    pub read_only_host: bool,
}

impl SupervisorState {
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// The public name of a path the kernel reported for a tracee: a path
    /// in the private layer loses the layer's prefix; any other is public
    /// already.
    pub fn public_of(&self, path: &str) -> String {
        let Some(upper) = &self.upper else {
            return path.to_string();
        };
        match Path::new(path).strip_prefix(upper) {
            Ok(rest) => format!("/{}", rest.display()),
            Err(_) => path.to_string(),
        }
    }
}

/// The state an image carries, if it is a group checkpoint that has one.
/// Snapshots of processes not run under isotrace have none.
pub fn read(image: &Image) -> Result<Option<SupervisorState>, String> {
    if image.manifest.section(SECTION).is_none() {
        return Ok(None);
    }
    let path = image.dir.join(SECTION);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let state: SupervisorState =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if state.version != VERSION {
        return Err(format!(
            "{}: version {} (this isotrace reads version {VERSION})",
            path.display(),
            state.version
        ));
    }
    Ok(Some(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_paths_become_public() {
        let s = SupervisorState {
            upper: Some(PathBuf::from("/h/envs/a/upper")),
            ..Default::default()
        };
        assert_eq!(s.public_of("/h/envs/a/upper/etc/x"), "/etc/x");
        assert_eq!(s.public_of("/h/envs/a/upper"), "/");
        assert_eq!(s.public_of("/h/envs/a/upperx/y"), "/h/envs/a/upperx/y");
        assert_eq!(s.public_of("/usr/bin/env"), "/usr/bin/env");
        let none = SupervisorState::default();
        assert_eq!(none.public_of("/h/envs/a/upper/x"), "/h/envs/a/upper/x");
    }

    #[test]
    fn json_round_trip() {
        let s = SupervisorState {
            version: VERSION,
            group: "g".into(),
            mode: "isolated".into(),
            env: Some("e".into()),
            upper: Some("/u".into()),
            trace: true,
            rules: Some(serde_json::json!({"version": 1, "exceptions": []})),
            read_only_host: true,
        };
        let back: SupervisorState = serde_json::from_slice(&s.to_json()).unwrap();
        assert_eq!(back, s);
    }
}
