//! `network-policy create|update|delete`: `[[network_policies]]` in `hub.toml`, edited in place.

use serde::{Deserialize, Serialize};
use toml_edit::{Item, Table, value};

use super::{Changed, Delete, Done, ManageError, Workspace, string_array};

/// Fields of a `[[network_policies]]` entry: all optional, so `update` changes only what is given.
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    /// Free text.
    #[arg(long)]
    pub description: Option<String>,
    /// true|false: any public destination.
    #[arg(long)]
    pub allow_all: Option<bool>,
    /// Host names the devbox may reach ("*." wildcards), comma-separated.
    #[arg(long = "allowed-hostnames", value_delimiter = ',', num_args = 0..)]
    pub allowed_hostnames: Option<Vec<String>>,
    /// true|false: other devboxes.
    #[arg(long)]
    pub allow_devbox_to_devbox: Option<bool>,
    /// true|false: the MCP gateway.
    #[arg(long)]
    pub allow_mcp_gateway: Option<bool>,
    /// true|false: the agent gateway hosts.
    #[arg(long)]
    pub allow_agent_gateway: Option<bool>,
}

/// Create a policy.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Create {
    /// Unique name.
    pub name: String,
    #[command(flatten)]
    pub fields: Fields,
}

/// Change some fields of a policy.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    /// Policy name.
    pub name: String,
    #[command(flatten)]
    pub fields: Fields,
}

fn policy_index(ws: &Workspace, name: &str) -> Result<usize, ManageError> {
    ws.doc
        .get("network_policies")
        .and_then(Item::as_array_of_tables)
        .and_then(|a| {
            a.iter()
                .position(|t| t.get("name").and_then(Item::as_str) == Some(name))
        })
        .ok_or_else(|| {
            ManageError::NotFound(format!(
                "no network policy named {name:?}; see `mcp-hub network-policy list`"
            ))
        })
}

impl Fields {
    fn set(self, t: &mut Table) {
        if let Some(d) = self.description {
            t.insert("description", value(d));
        }
        for (k, v) in [
            ("allow_all", self.allow_all),
            ("allow_devbox_to_devbox", self.allow_devbox_to_devbox),
            ("allow_mcp_gateway", self.allow_mcp_gateway),
            ("allow_agent_gateway", self.allow_agent_gateway),
        ] {
            if let Some(v) = v {
                t.insert(k, value(v));
            }
        }
        if let Some(h) = self.allowed_hostnames {
            t.insert("allowed_hostnames", value(string_array(&h)));
        }
    }
}

impl Create {
    /// Append the policy.
    ///
    /// # Errors
    /// Duplicate name or invalid fields.
    pub fn apply(self, ws: &mut Workspace) -> Result<Done, ManageError> {
        let name = self.name;
        if ws.config.network_policy(&name).is_some() {
            return Err(ManageError::Conflict(format!(
                "a network policy named {name:?} exists; use `network-policy update`"
            )));
        }
        let mut t = Table::new();
        t.insert("name", value(&name));
        self.fields.set(&mut t);
        ws.tables_mut("network_policies").push(t);
        ws.commit(Changed::CONFIG)?;
        Ok(Done::said(format!("created network policy {name}")))
    }
}

impl Update {
    /// Change only the given fields.
    ///
    /// # Errors
    /// Unknown policy or invalid fields.
    pub fn apply(self, ws: &mut Workspace) -> Result<Done, ManageError> {
        let i = policy_index(ws, &self.name)?;
        if let Some(t) = ws.tables_mut("network_policies").get_mut(i) {
            self.fields.set(t);
        }
        ws.commit(Changed::CONFIG)?;
        Ok(Done::said(format!("updated network policy {}", self.name)))
    }
}

/// Remove the policy. With `force`, devboxes using it are left with no policy (no network).
///
/// # Errors
/// Unknown policy, or in use without `force`.
pub fn delete(d: Delete, ws: &mut Workspace) -> Result<Done, ManageError> {
    let name = d.name;
    let i = policy_index(ws, &name)?;
    let users: Vec<String> = ws
        .devboxes
        .list
        .iter()
        .filter(|d| d.network_policy.as_deref() == Some(name.as_str()))
        .map(|d| d.name.clone())
        .collect();
    if !users.is_empty() && !d.force {
        return Err(ManageError::Conflict(format!(
            "network policy {name:?} is used by devbox {}; pass --force to leave them without network",
            users.join(", ")
        )));
    }
    for d in &mut ws.devboxes.list {
        if d.network_policy.as_deref() == Some(name.as_str()) {
            d.network_policy = None;
        }
    }
    ws.tables_mut("network_policies").remove(i);
    ws.commit(Changed {
        config: true,
        devboxes: !users.is_empty(),
        ..Default::default()
    })?;
    Ok(Done::said(format!("deleted network policy {name}")))
}
