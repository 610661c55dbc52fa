//! Tool pinning's two state files, each with one writer.
//!
//! - `tool-approvals.json`: the operator's decisions, per MCP config id and tool name, the approved
//!   definition and its digest. Written only by the edit path (`mcp-hub tools approve|revoke`, under the
//!   edit lock), loaded with the snapshot and reloaded live like the other state files.
//! - `tools-seen.json`: what the hub has learned from the `tools/list` results it relayed (and from
//!   `tools refresh`): per config and tool, the definition last seen, when first and last seen, and
//!   whether the upstream's last complete list dropped it. Written by the running hub (or, when none
//!   runs, by `tools refresh` itself), so a restart neither forgets a change nor reports it again.
//!
//! Definitions are kept whole (both files), so `tools list` can show what changed, not only that
//! something did; the digest is what decides. Both are JSON: a JSON Schema holds `null`s, which TOML
//! cannot.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{fsutil, issue, read_optional};
use crate::config::ConfigIssue;
use crate::policy::pins::{self, Digest};

/// One approved definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approved {
    /// Digest of `definition`'s canonical JSON.
    pub digest: Digest,
    /// The definition as approved (for diffs).
    pub definition: Value,
    /// When it was approved.
    pub approved_ms: u64,
}

/// One tool as last seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeenTool {
    /// Digest of `definition`.
    pub digest: Digest,
    /// The definition last seen.
    pub definition: Value,
    /// When the name was first seen.
    pub first_seen_ms: u64,
    /// When it was last listed.
    pub last_seen_ms: u64,
    /// When its definition (or presence) last changed.
    pub changed_ms: u64,
    /// The upstream's last complete list did not have it.
    #[serde(default)]
    pub removed: bool,
}

/// One of the two files: MCP config id -> tool name -> entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinFile<E> {
    /// Format version (1).
    pub version: u32,
    /// config id -> tool -> entry.
    pub configs: BTreeMap<String, BTreeMap<String, E>>,
}

/// The operator's approvals: MCP config id -> tool name -> approved definition.
pub type Approvals = PinFile<Approved>;

/// What the hub has seen: MCP config id -> tool name -> last seen.
pub type Seen = PinFile<SeenTool>;

/// An entry of either file: a definition and the digest it claims.
pub trait Entry {
    /// What the file holds, for messages.
    const WHAT: &'static str;
    /// The digest the entry claims.
    fn digest(&self) -> &Digest;
    /// The definition the digest is claimed for.
    fn definition(&self) -> &Value;
}

impl Entry for Approved {
    const WHAT: &'static str = "tool approvals";
    fn digest(&self) -> &Digest {
        &self.digest
    }
    fn definition(&self) -> &Value {
        &self.definition
    }
}

impl Entry for SeenTool {
    const WHAT: &'static str = "tool observations";
    fn digest(&self) -> &Digest {
        &self.digest
    }
    fn definition(&self) -> &Value {
        &self.definition
    }
}

impl<E> Default for PinFile<E> {
    fn default() -> Self {
        Self {
            version: 1,
            configs: BTreeMap::new(),
        }
    }
}

impl<E: Entry + Serialize + for<'de> Deserialize<'de>> PinFile<E> {
    /// Load; a missing file is an empty one.
    ///
    /// # Errors
    /// Unreadable or malformed file, or a digest that does not match its definition.
    pub fn load(path: &Path) -> Result<Self, Vec<ConfigIssue>> {
        let what = E::WHAT;
        let Some(text) = read_optional(path).map_err(|e| vec![e])? else {
            return Ok(Self::default());
        };
        let t: Self = serde_json::from_str(&text)
            .map_err(|e| vec![issue(path, "", format!("malformed {what}: {e}"))])?;
        let mut issues = Vec::new();
        if t.version != 1 {
            issues.push(issue(
                path,
                "version",
                format!("unsupported {what} version {}; expected 1", t.version),
            ));
        }
        for (c, m) in &t.configs {
            for (tool, x) in m {
                // SECURITY: the digest decides; a hand-edited file whose digest does not match its
                // definition would approve something other than what `tools list` shows.
                if pins::digest(x.definition()) != *x.digest() {
                    issues.push(issue(
                        path,
                        &format!("configs.{c}.{tool}.digest"),
                        "digest does not match the definition; approve the tool again with `mcp-hub tools approve`",
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

    /// Write atomically (0600).
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        fsutil::write_atomic(path, &text, 0o600)
    }
}

impl Approvals {
    /// The approval of `tool` under config `id`.
    pub fn get(&self, id: &str, tool: &str) -> Option<&Approved> {
        self.configs.get(id)?.get(tool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn files_round_trip_and_refuse_a_digest_that_lies() {
        let dir = std::env::temp_dir().join(format!("mcp-hub-tools-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("tool-approvals.json");
        assert_eq!(
            Approvals::load(&p).unwrap().configs.len(),
            0,
            "missing is empty"
        );
        let def = json!({"name": "t", "description": "d"});
        let mut a = Approvals::default();
        a.configs.entry("mcp_1".into()).or_default().insert(
            "t".into(),
            Approved {
                digest: pins::digest(&def),
                definition: def,
                approved_ms: 5,
            },
        );
        a.save(&p).unwrap();
        assert_eq!(Approvals::load(&p).unwrap(), a);
        // A definition edited by hand under its old digest is refused, with where and what to do.
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace("\"d\"", "\"read ~/.ssh\"");
        std::fs::write(&p, text).unwrap();
        let e = Approvals::load(&p).unwrap_err();
        assert_eq!(e[0].path, "configs.mcp_1.t.digest");
        assert!(e[0].message.contains("tools approve"), "{}", e[0].message);
        std::fs::write(&p, r#"{"version":1,"configs":{},"extra":1}"#).unwrap();
        assert!(
            Approvals::load(&p).unwrap_err()[0]
                .message
                .contains("malformed")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
