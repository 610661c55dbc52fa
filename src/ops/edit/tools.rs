//! `tools list|approve|revoke|refresh`: the operator's side of tool pinning.
//!
//! The workflow: `tools refresh CONFIG` (or let an agent list), `tools list CONFIG` to review what
//! each tool says now and, for a changed one, what changed, then `tools approve CONFIG NAME...`.
//! Approvals are written to `tool-approvals.json` under the edit lock, like every edit, and a running
//! hub applies them at once (through the admin socket, or the file watcher).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Changed, Done, ManageError, Workspace};
use crate::config::{Config, McpConfig};
use crate::policy::pins::State;
use crate::state::fsutil::now_ms;
use crate::state::tools::{Approvals, Approved, Seen};

/// `tools list CONFIG`.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct List {
    /// MCP config name or id.
    #[arg(value_name = "MCP_CONFIG")]
    pub mcp_config: String,
}

/// `tools approve|revoke CONFIG NAME... | --all`.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Names {
    /// MCP config name or id.
    #[arg(value_name = "MCP_CONFIG")]
    pub mcp_config: String,
    /// Tool names, exactly as listed.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub names: Vec<String>,
    /// Every tool: approve every current definition, or revoke every approval.
    #[arg(long)]
    pub all: bool,
}

/// `tools refresh CONFIG [--secret NAME]`.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    /// MCP config name or id.
    #[arg(value_name = "MCP_CONFIG")]
    pub mcp_config: String,
    /// Stored secret to list with (default: the secret of the config's first binding).
    #[arg(long)]
    pub secret: Option<String>,
}

/// One tool in `tools list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Tool name.
    pub name: String,
    /// `allowed_tools` admits the name.
    pub allowed: bool,
    /// approved, new, changed or removed.
    pub state: String,
    /// Digest of the definition last seen.
    pub digest: Option<String>,
    /// Digest of the approved definition.
    pub approved_digest: Option<String>,
    /// When the name was first seen (ms since the epoch).
    pub first_seen_ms: Option<u64>,
    /// When it was last listed.
    pub last_seen_ms: Option<u64>,
    /// When its definition last changed.
    pub changed_ms: Option<u64>,
    /// When it was approved.
    pub approved_ms: Option<u64>,
    /// For a changed tool: a unified diff from the approved definition to the current one.
    pub diff: Option<String>,
}

fn config<'c>(c: &'c Config, name: &str) -> Result<&'c std::sync::Arc<McpConfig>, ManageError> {
    c.mcp_config(name).ok_or_else(|| {
        ManageError::NotFound(format!(
            "no mcp_config named {name:?}; see `mcp-hub mcp-config list`"
        ))
    })
}

/// Every tool the hub has seen or the operator approved for `cfg`, by name.
pub fn report(cfg: &McpConfig, approvals: &Approvals, seen: &Seen) -> Vec<Row> {
    let a = approvals.configs.get(&cfg.id);
    let s = seen.configs.get(&cfg.id);
    let names: BTreeSet<&String> = a
        .into_iter()
        .flat_map(|m| m.keys())
        .chain(s.into_iter().flat_map(|m| m.keys()))
        .collect();
    names
        .into_iter()
        .map(|name| {
            let ap = a.and_then(|m| m.get(name));
            let se = s.and_then(|m| m.get(name));
            let state = State::of(
                ap.map(|x| &x.digest),
                se.map(|x| &x.digest),
                se.is_some_and(|x| x.removed),
            );
            let diff = match (state, ap, se) {
                (State::Changed, Some(ap), Some(se)) => Some(diff(&ap.definition, &se.definition)),
                _ => None,
            };
            Row {
                name: name.clone(),
                allowed: cfg.allowed_tools.allows(name),
                state: state.as_str().into(),
                digest: se.map(|x| x.digest.to_string()),
                approved_digest: ap.map(|x| x.digest.to_string()),
                first_seen_ms: se.map(|x| x.first_seen_ms),
                last_seen_ms: se.map(|x| x.last_seen_ms),
                changed_ms: se.map(|x| x.changed_ms),
                approved_ms: ap.map(|x| x.approved_ms),
                diff,
            }
        })
        .collect()
}

/// How many of `rows` the operator has yet to decide on (new or changed).
fn awaiting_review(rows: &[Row]) -> usize {
    let states = [State::New.as_str(), State::Changed.as_str()];
    rows.iter()
        .filter(|r| states.contains(&r.state.as_str()))
        .count()
}

/// A value with its object members in name order at every depth (whatever the map type keeps).
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// What changed from `approved` to `now`, as a unified diff of their pretty, sorted JSON.
fn diff(approved: &Value, now: &Value) -> String {
    let a = serde_json::to_string_pretty(&sorted(approved)).unwrap_or_default() + "\n";
    let b = serde_json::to_string_pretty(&sorted(now)).unwrap_or_default() + "\n";
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(2)
        .header("approved", "listed now")
        .to_string()
}

/// `ms` since the epoch as UTC text, to the second.
fn when(ms: Option<u64>) -> String {
    let Some(t) = ms
        .and_then(|ms| i64::try_from(ms / 1000).ok())
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
    else {
        return "-".into();
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `tools list` for people: one line per tool, then the diffs of changed tools.
pub fn render(cfg: &McpConfig, rows: &[Row]) -> String {
    let mut out = format!(
        "mcp_config {} ({}): pin_tools = {}\n",
        cfg.name, cfg.id, cfg.pin_tools
    );
    if rows.is_empty() {
        out.push_str(&format!(
            "no tools seen yet; run `mcp-hub tools refresh {}`\n",
            cfg.name
        ));
        return out;
    }
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    out.push_str(&format!(
        "{:width$}  {:8}  {:8}  {:12}  {:20}  {:20}\n",
        "TOOL", "ALLOWED", "STATE", "DIGEST", "FIRST SEEN", "LAST SEEN"
    ));
    for r in rows {
        let digest = r
            .digest
            .as_deref()
            .or(r.approved_digest.as_deref())
            .map_or("-", |d| d.get(7..19).unwrap_or(d));
        out.push_str(&format!(
            "{:width$}  {:8}  {:8}  {:12}  {:20}  {:20}\n",
            r.name,
            if r.allowed { "yes" } else { "no" },
            r.state,
            digest,
            when(r.first_seen_ms),
            when(r.last_seen_ms)
        ));
    }
    for r in rows.iter().filter(|r| r.diff.is_some()) {
        out.push_str(&format!(
            "\n{} changed at {}:\n{}",
            r.name,
            when(r.changed_ms),
            r.diff.as_deref().unwrap_or("")
        ));
    }
    let pending = awaiting_review(rows);
    if pending > 0 {
        out.push_str(&format!(
            "\n{pending} tool(s) await review: `mcp-hub tools approve {} NAME...`\n",
            cfg.name
        ));
    }
    out
}

impl List {
    /// The rows, from `approvals` and `seen` (the files, or a running hub's memory).
    ///
    /// # Errors
    /// Unknown config.
    pub fn rows(
        &self,
        c: &Config,
        approvals: &Approvals,
        seen: &Seen,
    ) -> Result<(Vec<Row>, String), ManageError> {
        let cfg = config(c, &self.mcp_config)?;
        let rows = report(cfg, approvals, seen);
        let text = render(cfg, &rows);
        Ok((rows, text))
    }
}

impl Names {
    /// Approve the current definitions of the named tools (or all).
    ///
    /// # Errors
    /// Unknown config, or a name the hub has not seen listed (or saw removed).
    pub fn approve(self, ws: &mut Workspace) -> Result<Done, ManageError> {
        let cfg = config(&ws.config, &self.mcp_config)?;
        let (id, name) = (cfg.id.clone(), cfg.name.clone());
        let pinned = cfg.pin_tools;
        let seen = Seen::load(&ws.paths().tools_seen_file)
            .map_err(|e| ManageError::Invalid(crate::config::ConfigError::Invalid(e)))?;
        let listed = seen.configs.get(&id);
        let current: Vec<(&String, &crate::state::tools::SeenTool)> = listed
            .into_iter()
            .flatten()
            .filter(|(_, s)| !s.removed)
            .collect();
        let chosen: Vec<_> = if self.all {
            current
        } else {
            let mut out = Vec::new();
            for n in &self.names {
                let s = current.iter().find(|(k, _)| *k == n).ok_or_else(|| {
                    ManageError::NotFound(format!(
                        "{n:?} is not among the tools {name}'s upstream lists now; see `mcp-hub tools list {name}` (or run `mcp-hub tools refresh {name}`)"
                    ))
                })?;
                out.push(*s);
            }
            out
        };
        if chosen.is_empty() {
            return Err(ManageError::NotFound(format!(
                "no tools of {name} seen yet; run `mcp-hub tools refresh {name}` first"
            )));
        }
        let now = now_ms();
        let mut said = Vec::new();
        let entry = ws.approvals.configs.entry(id).or_default();
        for (n, s) in chosen {
            said.push(format!("{n} ({})", s.digest.short()));
            entry.insert(
                n.clone(),
                Approved {
                    digest: s.digest,
                    definition: s.definition.clone(),
                    approved_ms: now,
                },
            );
        }
        ws.commit(Changed::APPROVALS)?;
        let mut msg = format!("approved for {name}: {}", said.join(", "));
        if !pinned {
            msg.push_str(&format!(
                "\nnote: pin_tools is off for {name}; approvals apply once `mcp-hub mcp-config update {name} --pin-tools true`"
            ));
        }
        Ok(Done::said(msg))
    }

    /// Withdraw the named approvals (or all of the config's).
    ///
    /// # Errors
    /// Unknown config, or a name that is not approved.
    pub fn revoke(self, ws: &mut Workspace) -> Result<Done, ManageError> {
        let cfg = config(&ws.config, &self.mcp_config)?;
        let (id, name) = (cfg.id.clone(), cfg.name.clone());
        let entry = ws.approvals.configs.entry(id.clone()).or_default();
        let gone: Vec<String> = if self.all {
            std::mem::take(entry).into_keys().collect()
        } else {
            for n in &self.names {
                if !entry.contains_key(n) {
                    return Err(ManageError::NotFound(format!(
                        "{n:?} has no approval for {name}; see `mcp-hub tools list {name}`"
                    )));
                }
            }
            self.names
                .iter()
                .filter_map(|n| entry.remove_entry(n).map(|(k, _)| k))
                .collect()
        };
        if entry.is_empty() {
            ws.approvals.configs.remove(&id);
        }
        ws.commit(Changed::APPROVALS)?;
        Ok(Done::said(if gone.is_empty() {
            format!("no approvals for {name}")
        } else {
            format!("revoked for {name}: {}", gone.join(", "))
        }))
    }
}

/// The rendered credential `r` lists `cfg` with: its `--secret`, or the secret of the first binding
/// that uses the config.
///
/// # Errors
/// Unknown config or secret, or no binding to take a secret from.
pub fn refresh_credential(
    r: &Refresh,
    config_file: &std::path::Path,
) -> Result<(Config, std::sync::Arc<McpConfig>, http::HeaderValue), ManageError> {
    let c = crate::config::load(config_file)?;
    let cfg = config(&c, &r.mcp_config)?.clone();
    let secrets = crate::state::secrets::Secrets::load(&c.paths.secrets_file)
        .map_err(crate::config::ConfigError::Invalid)?;
    let name = match &r.secret {
        Some(s) => s.clone(),
        None => {
            let devboxes = crate::state::devboxes::Devboxes::load(&c.paths.devboxes_file)
                .map_err(crate::config::ConfigError::Invalid)?;
            devboxes
                .list
                .iter()
                .flat_map(|d| d.mcp.values())
                .find(|b| b.mcp_config == cfg.name || b.mcp_config == cfg.id)
                .map(|b| b.secret.clone())
                .ok_or_else(|| {
                    ManageError::BadInput(format!(
                        "no devbox binds {}; pass --secret NAME",
                        cfg.name
                    ))
                })?
        }
    };
    let secret = secrets.map.get(&name).ok_or_else(|| {
        ManageError::NotFound(format!(
            "{name:?} is not a stored secret; see `mcp-hub secret list`"
        ))
    })?;
    let credential = crate::runtime::credentials::render(&cfg.credential, &secret.value)
        .map_err(ManageError::BadInput)?;
    Ok((c, cfg, credential))
}

/// `tools refresh`: list the upstream with a stored secret and record what it lists into `pins` (the
/// running hub's, or one loaded from the files when none runs). Returns the message and whether the
/// callable set moved.
///
/// # Errors
/// Unknown config or secret, or the upstream could not be listed.
pub async fn refresh(
    r: &Refresh,
    config_file: &std::path::Path,
    pins: &crate::runtime::pins::Pins,
) -> Result<(Done, bool), ManageError> {
    let (c, cfg, credential) = refresh_credential(r, config_file)?;
    let tools = crate::mcp::refresh::list_tools(&c.gateway, &cfg, credential)
        .await
        .map_err(ManageError::NotFound)?;
    let listed: Vec<_> = tools
        .iter()
        .filter_map(crate::policy::pins::definition)
        .map(|(n, def)| (n.to_string(), crate::policy::pins::digest(&def), def))
        .collect();
    let via = crate::runtime::pins::Via {
        devbox: "-",
        env_var: "tools refresh",
    };
    let s = pins.observe(&cfg, listed.iter(), true, via);
    pins.flush().map_err(super::io(format!(
        "writing {}",
        c.paths.tools_seen_file.display()
    )))?;
    let (approvals, seen) = pins.current();
    let rows = report(&cfg, &approvals, &seen);
    let pending = awaiting_review(&rows);
    Ok((
        Done::said(format!(
            "{} lists {} tool(s); {pending} await review (`mcp-hub tools list {}`)",
            cfg.name,
            listed.len(),
            cfg.name
        )),
        s.callable_changed,
    ))
}
