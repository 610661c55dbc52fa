//! Host-side state under the state directory: devboxes and their bindings, issued token ids, the token
//! key, and the secrets file. Every write is atomic (`fsutil::write_atomic`).

pub mod devboxes;
pub mod fsutil;
pub mod secrets;
pub mod token;
pub mod tokens;
pub mod tools;

use std::io;
use std::path::Path;

use crate::config::{ConfigIssue, Paths};
use token::TokenKey;

fn issue(file: &Path, path: &str, message: impl Into<String>) -> ConfigIssue {
    ConfigIssue {
        file: file.display().to_string(),
        path: path.to_string(),
        message: message.into(),
    }
}

/// Read a state file that may legitimately not exist yet (empty state).
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, ConfigIssue> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(issue(path, "", format!("cannot read: {e}"))),
    }
}

/// Create the state directory and the token key if missing. Never replaces an existing key.
///
/// # Errors
/// I/O errors creating the directory or key.
pub fn init(paths: &Paths) -> io::Result<()> {
    fsutil::ensure_dir(&paths.state_dir, 0o700)?;
    if !paths.token_key_file.exists() {
        let key = TokenKey::generate().map_err(io::Error::other)?;
        match fsutil::create_new(&paths.token_key_file, key.expose_bytes(), 0o600) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Load the token key; `None` if it has not been created yet.
///
/// # Errors
/// Unreadable or malformed key file.
pub fn load_token_key(path: &Path) -> Result<Option<TokenKey>, ConfigIssue> {
    match std::fs::read(path) {
        Ok(b) => TokenKey::from_bytes(&b).map(Some).ok_or_else(|| {
            issue(
                path,
                "",
                "token key must be exactly 32 bytes; restore it from backup",
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(issue(path, "", format!("cannot read: {e}"))),
    }
}
