//! The secrets file: named credential values that exist only on the host.
//!
//! ```toml
//! version = 1
//! [secrets.GITHUB_MCP_TOKEN]
//! value = "ghp_…"
//! create_time_ms = 1732200000000
//! ```
//! Values are held as `SecretString` (redacted in `Debug`) and the file must be mode 0600.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{fsutil, issue, read_optional};
use crate::config::ConfigIssue;
use crate::config::validate::is_valid_name;

/// One stored secret.
#[derive(Debug, Clone)]
pub struct Secret {
    /// The credential itself.
    pub value: SecretString,
    /// When it was stored.
    pub create_time_ms: u64,
}

/// All secrets by name.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    /// Secrets by name.
    pub map: BTreeMap<String, Secret>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: i64,
    #[serde(default)]
    secrets: BTreeMap<String, RawSecret>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecret {
    value: String,
    #[serde(default)]
    create_time_ms: u64,
}

impl Secrets {
    /// Load and validate; a missing file is an empty store.
    ///
    /// # Errors
    /// Every problem found (never including a secret value).
    pub fn load(path: &Path) -> Result<Self, Vec<ConfigIssue>> {
        let Some(text) = read_optional(path).map_err(|e| vec![e])? else {
            return Ok(Self::default());
        };
        let mut issues = Vec::new();
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                // SECURITY: a secrets file others can read defeats the point of keeping secrets on the host.
                issues.push(issue(
                    path,
                    "",
                    format!(
                        "mode is {mode:o}, readable by other users; run `chmod 600 {}`",
                        path.display()
                    ),
                ));
            }
        }
        // SECURITY: serde errors may quote values, so only the key path is reported for value problems.
        let raw: RawFile = match toml::from_str(&text) {
            Ok(r) => r,
            Err(e) => {
                let msg = e.message();
                let safe = if msg.contains("unknown field") || msg.contains("missing field") {
                    msg.to_string()
                } else {
                    "not a valid secrets file (expected version = 1 and [secrets.NAME] value = \"...\")".to_string()
                };
                issues.push(issue(path, "", safe));
                return Err(issues);
            }
        };
        if raw.version != 1 {
            issues.push(issue(
                path,
                "version",
                format!("{} is not supported; expected 1", raw.version),
            ));
        }
        let mut map = BTreeMap::new();
        for (name, s) in raw.secrets {
            let at = format!("secrets.{name}");
            if !is_valid_name(&name) {
                issues.push(issue(
                    path,
                    &at,
                    "secret names must be 1-64 characters of A-Z a-z 0-9 _ - .",
                ));
                continue;
            }
            if s.value.is_empty() {
                issues.push(issue(path, &at, "value is empty"));
                continue;
            }
            if s.value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
                issues.push(issue(path, &at, "value contains control characters (a trailing newline?); store it without them"));
                continue;
            }
            map.insert(
                name,
                Secret {
                    value: SecretString::from(s.value),
                    create_time_ms: s.create_time_ms,
                },
            );
        }
        if issues.is_empty() {
            Ok(Self { map })
        } else {
            Err(issues)
        }
    }

    /// Write the store atomically with mode 0600.
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut secrets = toml::Table::new();
        for (name, s) in &self.map {
            let mut t = toml::Table::new();
            t.insert("value".into(), s.value.expose_secret().into());
            t.insert(
                "create_time_ms".into(),
                toml::Value::Integer(i64::try_from(s.create_time_ms).unwrap_or(i64::MAX)),
            );
            secrets.insert(name.clone(), t.into());
        }
        let mut root = toml::Table::new();
        root.insert("version".into(), 1.into());
        root.insert("secrets".into(), secrets.into());
        let body = toml::to_string(&root).map_err(std::io::Error::other)?;
        let text = format!(
            "# mcp-hub secrets. Keep this file mode 0600; edit with `mcp-hub secret`.\n{body}"
        );
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fsutil::ensure_dir(dir, 0o700)?;
        }
        fsutil::write_atomic(path, text.as_bytes(), 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secrets.toml");
        let mut s = Secrets::default();
        s.map.insert(
            "GITHUB_MCP_TOKEN".into(),
            Secret {
                value: SecretString::from("ghp_abc"),
                create_time_ms: 5,
            },
        );
        s.save(&p).unwrap();
        let back = Secrets::load(&p).unwrap();
        assert_eq!(
            back.map["GITHUB_MCP_TOKEN"].value.expose_secret(),
            "ghp_abc"
        );
        assert!(!format!("{back:?}").contains("ghp_abc"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = Secrets::load(&p).unwrap_err();
        assert!(e[0].message.contains("chmod 600"), "{e:?}");
    }

    #[test]
    fn errors_never_quote_values() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secrets.toml");
        fsutil::write_atomic(&p, b"version = 1\n[secrets.X]\nvalue = 12345678\n", 0o600).unwrap();
        let e = Secrets::load(&p).unwrap_err();
        assert!(!format!("{e:?}").contains("12345678"), "{e:?}");
    }
}
