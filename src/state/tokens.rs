//! `tokens.json`: which token id is currently issued for each (devbox, env var) binding.
//!
//! No token value is stored: a token is derived from the host key and the id (`token.rs`). A binding
//! without an entry has no valid token (never issued, or revoked).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::token::TokenId;
use super::{fsutil, issue, read_optional};
use crate::config::ConfigIssue;

/// One issued token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Issued {
    /// Token id (base64url).
    pub id: String,
    /// When it was issued.
    pub issued_ms: u64,
}

/// All issued tokens: devbox -> env var -> token.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tokens {
    /// Format version (1).
    pub version: u32,
    /// devbox -> env var -> issued token.
    pub tokens: BTreeMap<String, BTreeMap<String, Issued>>,
}

impl Tokens {
    /// Load; a missing file means nothing issued.
    ///
    /// # Errors
    /// Unreadable or malformed file.
    pub fn load(path: &Path) -> Result<Self, Vec<ConfigIssue>> {
        let Some(text) = read_optional(path).map_err(|e| vec![e])? else {
            return Ok(Self {
                version: 1,
                tokens: BTreeMap::new(),
            });
        };
        let t: Self = serde_json::from_str(&text)
            .map_err(|e| vec![issue(path, "", format!("malformed token state: {e}"))])?;
        let mut issues = Vec::new();
        if t.version != 1 {
            issues.push(issue(
                path,
                "version",
                "unsupported token state version; expected 1",
            ));
        }
        for (dev, m) in &t.tokens {
            for (env, i) in m {
                if TokenId::decode(&i.id).is_none() {
                    issues.push(issue(
                        path,
                        &format!("tokens.{dev}.{env}.id"),
                        "not a valid token id",
                    ));
                }
            }
        }
        if issues.is_empty() {
            Ok(t)
        } else {
            Err(issues)
        }
    }

    /// Issue a fresh token id for a binding, replacing (and thereby revoking) any previous one.
    ///
    /// # Errors
    /// If the OS random source fails.
    pub fn issue(&mut self, devbox: &str, env_var: &str) -> Result<TokenId, getrandom::Error> {
        let id = TokenId::random()?;
        self.tokens.entry(devbox.to_string()).or_default().insert(
            env_var.to_string(),
            Issued {
                id: id.encode(),
                issued_ms: fsutil::now_ms(),
            },
        );
        Ok(id)
    }

    /// Revoke a binding's token. Returns whether one was issued.
    pub fn revoke(&mut self, devbox: &str, env_var: &str) -> bool {
        let Some(m) = self.tokens.get_mut(devbox) else {
            return false;
        };
        let had = m.remove(env_var).is_some();
        if m.is_empty() {
            self.tokens.remove(devbox);
        }
        had
    }

    /// The issued token id for a binding.
    pub fn get(&self, devbox: &str, env_var: &str) -> Option<TokenId> {
        self.tokens
            .get(devbox)?
            .get(env_var)
            .and_then(|i| TokenId::decode(&i.id))
    }

    /// Write atomically (0600).
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut t = self.clone();
        t.version = 1;
        let text = serde_json::to_vec_pretty(&t).map_err(std::io::Error::other)?;
        fsutil::write_atomic(path, &text, 0o600)
    }
}
