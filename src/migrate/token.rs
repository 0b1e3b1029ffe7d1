//! The shared token that authenticates a migration stream: from
//! `--token-file FILE` (its first line), else $ISOTRACE_MIGRATE_TOKEN.
//! Both ends must hold the same token; every frame carries an HMAC-SHA256
//! keyed from it (checkpoint/STREAM.md), so the token itself never
//! crosses the network.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The environment variable that holds the token.
pub const VAR: &str = "ISOTRACE_MIGRATE_TOKEN";
/// Shorter tokens are refused: they could be guessed.
pub const MIN_LEN: usize = 16;

pub fn load(file: Option<&Path>) -> Result<Vec<u8>, String> {
    let token = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("token file {}: {e}", path.display()))?;
            if std::fs::metadata(path).is_ok_and(|m| m.mode() & 0o077 != 0) {
                eprintln!(
                    "isotrace: warning: token file {} is readable by other users (chmod 600 it)",
                    path.display()
                );
            }
            text.lines().next().unwrap_or("").trim().to_string()
        }
        None => std::env::var(VAR).map_err(|_| {
            format!("no token: set {VAR} or give --token-file FILE (the same on both ends)")
        })?,
    };
    if token.len() < MIN_LEN {
        return Err(format!(
            "the token is {} characters long; use at least {MIN_LEN} (e.g. `openssl rand -hex 16`)",
            token.len()
        ));
    }
    Ok(token.into_bytes())
}

/// A fresh random token, for a migration to this host.
pub fn random() -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
        .into_bytes())
}
