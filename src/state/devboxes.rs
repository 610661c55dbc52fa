//! `devboxes.toml`: each devbox, the source addresses the host sees it at, its MCP bindings
//! `ENV_VAR -> { mcp_config, secret }` and its agent-gateway bindings
//! `ENV_VAR -> { gateway_config, secret, limits }`. Env vars are one namespace per devbox: a gateway
//! binding `ANTHROPIC` also claims `ANTHROPIC_URL`.
//!
//! ```toml
//! version = 1
//! [[devboxes]]
//! name = "devbox-1"
//! addresses = ["10.77.0.2"]
//! [devboxes.mcp.GITHUB_MCP_SECRET]
//! mcp_config = "github"
//! secret = "GITHUB_MCP_TOKEN"
//! [devboxes.gateways.ANTHROPIC]
//! gateway_config = "anthropic"
//! secret = "ANTHROPIC_KEY"
//! max_requests_per_minute = 60
//! ```

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{fsutil, issue, read_optional};
use crate::config::ConfigIssue;
use crate::config::validate::{is_valid_env_var, is_valid_name};

/// One MCP server made available to a devbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpBinding {
    /// Name or id of an `[[mcp_configs]]` entry.
    pub mcp_config: String,
    /// Name of a stored secret.
    pub secret: String,
}

/// One REST API (through the agent gateway) made available to a devbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayBinding {
    /// Name or id of a gateway config (`[[gateway_configs]]` or a system config).
    pub gateway_config: String,
    /// Name of a stored secret.
    pub secret: String,
    /// Requests allowed per minute (a token bucket of this size, refilled over a minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_minute: Option<u32>,
    /// Tokens (input and output, as the upstream reports them) allowed per UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_day: Option<u64>,
}

/// A devbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Devbox {
    /// Unique name.
    pub name: String,
    /// Source addresses the host sees it at. When set, its tokens are refused from anywhere else.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpAddr>,
    /// When it was created.
    #[serde(default)]
    pub create_time_ms: u64,
    /// Name of its `[[network_policies]]` entry; none means no network at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_policy: Option<String>,
    /// `ENV_VAR -> binding`.
    #[serde(default)]
    pub mcp: BTreeMap<String, McpBinding>,
    /// `ENV_VAR -> agent-gateway binding` (the devbox also gets `ENV_VAR_URL`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub gateways: BTreeMap<String, GatewayBinding>,
}

impl Devbox {
    /// Whether `env` is already one of this devbox's environment variables: `RL_MCP_URL`, a binding's,
    /// or a gateway binding's `_URL`.
    pub fn env_taken(&self, env: &str) -> bool {
        env == "RL_MCP_URL"
            || self.mcp.contains_key(env)
            || self.gateways.contains_key(env)
            || env
                .strip_suffix("_URL")
                .is_some_and(|g| self.gateways.contains_key(g))
    }
}

/// The `_URL` variable a gateway binding `env` also claims, if it fits the env var rules.
pub fn env_url(env: &str) -> Option<String> {
    let u = format!("{env}_URL");
    is_valid_env_var(&u).then_some(u)
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: i64,
    #[serde(default)]
    devboxes: Vec<toml::Value>,
}

/// All devboxes.
#[derive(Debug, Clone, Default)]
pub struct Devboxes {
    /// Devboxes in file order.
    pub list: Vec<Devbox>,
}

impl Devboxes {
    /// Load and validate (references to configs and secrets are checked by the snapshot).
    ///
    /// # Errors
    /// Every problem found.
    pub fn load(path: &Path) -> Result<Self, Vec<ConfigIssue>> {
        match read_optional(path).map_err(|e| vec![e])? {
            None => Ok(Self::default()),
            Some(text) => Self::parse(&text, path),
        }
    }

    /// Parse devboxes text.
    ///
    /// # Errors
    /// Every problem found.
    pub fn parse(text: &str, path: &Path) -> Result<Self, Vec<ConfigIssue>> {
        let raw: RawFile = toml::from_str(text)
            .map_err(|e| vec![issue(path, "", format!("TOML error: {}", e.message()))])?;
        let mut issues = Vec::new();
        if raw.version != 1 {
            issues.push(issue(
                path,
                "version",
                format!("{} is not supported; expected 1", raw.version),
            ));
        }
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        let mut list = Vec::new();
        for (i, v) in raw.devboxes.into_iter().enumerate() {
            let at = format!("devboxes[{i}]");
            let d: Devbox = match v.try_into() {
                Ok(d) => d,
                Err(e) => {
                    issues.push(issue(path, &at, e.message()));
                    continue;
                }
            };
            if !is_valid_name(&d.name) {
                issues.push(issue(
                    path,
                    &format!("{at}.name"),
                    format!("{:?} must be 1-64 characters of A-Z a-z 0-9 _ - .", d.name),
                ));
            } else if !names.insert(d.name.clone()) {
                issues.push(issue(
                    path,
                    &format!("{at}.name"),
                    format!("{:?} is used by another devbox", d.name),
                ));
            }
            for a in &d.addresses {
                if !addrs.insert(*a) {
                    // SECURITY: one source address must identify exactly one devbox.
                    issues.push(issue(
                        path,
                        &format!("{at}.addresses"),
                        format!("{a} is claimed by another devbox"),
                    ));
                }
            }
            for env in d.mcp.keys() {
                if !is_valid_env_var(env) || env == "RL_MCP_URL" {
                    issues.push(issue(
                        path,
                        &format!("{at}.mcp.{env}"),
                        "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*) other than RL_MCP_URL",
                    ));
                }
            }
            let mut claimed: HashSet<String> = d.mcp.keys().cloned().collect();
            claimed.insert("RL_MCP_URL".into());
            for env in d.gateways.keys() {
                let at = format!("{at}.gateways.{env}");
                let Some(url) = env_url(env) else {
                    issues.push(issue(
                        path,
                        &at,
                        "must be an environment variable name ([A-Za-z_][A-Za-z0-9_]*) of at most 124 characters",
                    ));
                    continue;
                };
                for v in [env.clone(), url] {
                    if !claimed.insert(v.clone()) {
                        issues.push(issue(
                            path,
                            &at,
                            format!("{v} is already an environment variable of this devbox; pick another name"),
                        ));
                    }
                }
            }
            list.push(d);
        }
        if issues.is_empty() {
            Ok(Self { list })
        } else {
            Err(issues)
        }
    }

    /// Find a devbox by name.
    pub fn get(&self, name: &str) -> Option<&Devbox> {
        self.list.iter().find(|d| d.name == name)
    }

    /// Write atomically (0600).
    ///
    /// # Errors
    /// I/O errors.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        #[derive(Serialize)]
        struct Out<'a> {
            version: i64,
            devboxes: &'a [Devbox],
        }
        let body = toml::to_string(&Out {
            version: 1,
            devboxes: &self.list,
        })
        .map_err(std::io::Error::other)?;
        let text = format!(
            "# mcp-hub devboxes. Managed by `mcp-hub devbox`; hand edits are validated on load.\n{body}"
        );
        fsutil::write_atomic(path, text.as_bytes(), 0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("devboxes.toml");
        let mut s = Devboxes::default();
        s.list.push(Devbox {
            name: "box1".into(),
            addresses: vec!["10.0.0.2".parse().unwrap()],
            create_time_ms: 1,
            network_policy: Some("default".into()),
            mcp: [(
                "GITHUB_MCP_SECRET".to_string(),
                McpBinding {
                    mcp_config: "github".into(),
                    secret: "GH".into(),
                },
            )]
            .into_iter()
            .collect(),
            gateways: [(
                "ANTHROPIC".to_string(),
                GatewayBinding {
                    gateway_config: "anthropic".into(),
                    secret: "AK".into(),
                    max_requests_per_minute: Some(5),
                    max_tokens_per_day: None,
                },
            )]
            .into_iter()
            .collect(),
        });
        s.save(&p).unwrap();
        let back = Devboxes::load(&p).unwrap();
        assert_eq!(back.list[0].mcp["GITHUB_MCP_SECRET"].mcp_config, "github");
        assert_eq!(back.list[0].addresses, s.list[0].addresses);
        assert_eq!(back.list[0].gateways, s.list[0].gateways);
    }

    #[test]
    fn shared_addresses_and_bad_env_vars_are_rejected() {
        let text = r#"
version = 1
[[devboxes]]
name = "a"
addresses = ["10.0.0.2"]
[devboxes.mcp."1BAD"]
mcp_config = "github"
secret = "GH"
[[devboxes]]
name = "b"
addresses = ["10.0.0.2"]
[devboxes.mcp.X_URL]
mcp_config = "github"
secret = "GH"
[devboxes.gateways.X]
gateway_config = "anthropic"
secret = "AK"
"#;
        let e = Devboxes::parse(text, Path::new("d.toml")).unwrap_err();
        let msgs: Vec<_> = e
            .iter()
            .map(|i| format!("{}: {}", i.path, i.message))
            .collect();
        assert!(
            msgs.iter().any(|m| m.starts_with("devboxes[0].mcp.1BAD")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|m| m.contains("claimed by another devbox")),
            "{msgs:?}"
        );
        // A gateway binding's `_URL` variable is claimed too.
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("devboxes[1].gateways.X") && m.contains("X_URL")),
            "{msgs:?}"
        );
    }
}
