//! `secret create|delete`: credential values kept on the host (the secrets file, mode 0600).

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{Changed, Delete, Done, ManageError, Workspace, unbind_where, users};
use crate::config;
use crate::state::fsutil;
use crate::state::secrets::Secret;

/// A secret value on its way from the CLI's stdin to the secrets file: never shown by `Debug`, and
/// carried only over the local admin socket.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Value(pub String);

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Value([REDACTED])")
    }
}

/// Store a secret; the value is read from stdin.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Create {
    /// Secret name, e.g. GITHUB_MCP_TOKEN.
    pub name: String,
    /// Replace an existing value.
    #[arg(long)]
    pub replace: bool,
    /// The value (read from stdin by the CLI, never from the command line).
    #[arg(skip)]
    pub value: Value,
}

impl Create {
    /// Store the value (or replace it, with `replace`). One trailing newline is not part of it.
    ///
    /// # Errors
    /// A malformed name or an empty value (`BadInput`), or an existing name without `replace`.
    pub fn apply(self, ws: &mut Workspace) -> Result<Done, ManageError> {
        let name = self.name;
        if ws.secrets.map.contains_key(&name) && !self.replace {
            return Err(ManageError::Conflict(format!(
                "secret {name:?} exists; pass --replace to change its value"
            )));
        }
        if !config::validate::is_valid_name(&name) {
            return Err(ManageError::BadInput(format!(
                "{name:?}: secret names must be 1-64 characters of A-Z a-z 0-9 _ - ."
            )));
        }
        let value = SecretString::from(self.value.0);
        let v = value.expose_secret().trim_end_matches(['\n', '\r']);
        if v.is_empty() {
            return Err(ManageError::BadInput(
                "the secret value is empty (it is read from stdin)".into(),
            ));
        }
        ws.secrets.map.insert(
            name.clone(),
            Secret {
                value: SecretString::from(v.to_string()),
                create_time_ms: fsutil::now_ms(),
            },
        );
        ws.commit(Changed::SECRETS)?;
        Ok(Done::said(format!("stored secret {name}")))
    }
}

/// Remove the secret. With `force`, bindings using it are removed (and their tokens revoked).
///
/// # Errors
/// Unknown, or in use without `force`.
pub fn delete(d: Delete, ws: &mut Workspace) -> Result<Done, ManageError> {
    let name = d.name;
    if !ws.secrets.map.contains_key(&name) {
        return Err(ManageError::NotFound(format!("no secret named {name:?}")));
    }
    let used = users(ws, |b| b.secret == name);
    if !used.is_empty() && !d.force {
        return Err(ManageError::Conflict(format!(
            "secret {name:?} is used by {}; pass --force to remove those bindings too",
            used.join(", ")
        )));
    }
    unbind_where(ws, |b| b.secret == name);
    ws.secrets.map.remove(&name);
    ws.commit(Changed {
        secrets: true,
        devboxes: !used.is_empty(),
        tokens: !used.is_empty(),
        ..Default::default()
    })?;
    Ok(Done::said(format!("deleted secret {name}")))
}
