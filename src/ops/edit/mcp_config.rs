//! `mcp-config create|update|delete`: upstream MCP server definitions in `hub.toml`.

use serde::{Deserialize, Serialize};
use toml_edit::{Table, value};

use super::{Changed, Delete, Done, ManageError, Workspace, string_array, unbind_where, users};
use crate::state::fsutil;

/// Define an upstream MCP server.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Create {
    /// Unique name, e.g. github.
    #[arg(long)]
    pub name: String,
    /// Upstream MCP endpoint URL.
    #[arg(long)]
    pub endpoint: String,
    /// Allowed tool glob patterns, e.g. 'github.search_*' (repeat or comma-separate).
    #[arg(long = "allowed-tools", required = true, value_delimiter = ',', num_args = 1..)]
    pub allowed_tools: Vec<String>,
    /// Free text.
    #[arg(long)]
    pub description: Option<String>,
    /// Header carrying the secret (default Authorization).
    #[arg(long, requires = "credential_value")]
    pub credential_header: Option<String>,
    /// Header value template containing {secret} (default "Bearer {secret}").
    #[arg(long, requires = "credential_header")]
    pub credential_value: Option<String>,
    /// List and forward tools only in a definition approved with `mcp-hub tools approve`.
    #[arg(long, value_name = "true|false", action = clap::ArgAction::Set, default_value_t = false)]
    #[serde(default)]
    pub pin_tools: bool,
}

/// Change allowed tools, description or endpoint.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    /// Name or id.
    pub name: String,
    /// New allowed tool glob patterns (replace the old ones).
    #[arg(long = "allowed-tools", value_delimiter = ',', num_args = 1..)]
    pub allowed_tools: Option<Vec<String>>,
    /// New description.
    #[arg(long)]
    pub description: Option<String>,
    /// New upstream MCP endpoint URL.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Turn tool pinning on or off (see `mcp-hub tools`).
    #[arg(long, value_name = "true|false", action = clap::ArgAction::Set)]
    #[serde(default)]
    pub pin_tools: Option<bool>,
}

impl Create {
    /// Append the config; the message names its new id.
    ///
    /// # Errors
    /// Invalid fields or duplicate name.
    pub fn apply(self, ws: &mut Workspace) -> Result<Done, ManageError> {
        if ws.config.mcp_config(&self.name).is_some() {
            return Err(ManageError::Conflict(format!(
                "an mcp_config named {:?} already exists; use `mcp-config update`",
                self.name
            )));
        }
        let id = super::random_id("mcp_")?;
        let mut t = Table::new();
        t.insert("id", value(&id));
        t.insert("name", value(&self.name));
        t.insert("endpoint", value(&self.endpoint));
        t.insert("allowed_tools", value(string_array(&self.allowed_tools)));
        if let Some(d) = &self.description {
            t.insert("description", value(d));
        }
        t.insert(
            "create_time_ms",
            value(i64::try_from(fsutil::now_ms()).unwrap_or(i64::MAX)),
        );
        if let (Some(h), Some(v)) = (&self.credential_header, &self.credential_value) {
            let mut c = toml_edit::InlineTable::new();
            c.insert("header", h.as_str().into());
            c.insert("value", v.as_str().into());
            t.insert("credential", value(c));
        }
        if self.pin_tools {
            t.insert("pin_tools", value(true));
        }
        ws.configs_mut().push(t);
        ws.commit(Changed::CONFIG)?;
        Ok(Done::said(format!(
            "created mcp_config {} ({id})",
            self.name
        )))
    }
}

impl Update {
    /// Change only the given fields.
    ///
    /// # Errors
    /// Unknown config or invalid values.
    pub fn apply(self, ws: &mut Workspace) -> Result<Done, ManageError> {
        let i = ws.config_index(&self.name)?;
        let t = ws
            .configs_mut()
            .get_mut(i)
            .ok_or_else(|| ManageError::NotFound(self.name.clone()))?;
        if let Some(a) = &self.allowed_tools {
            t.insert("allowed_tools", value(string_array(a)));
        }
        if let Some(d) = self.description {
            t.insert("description", value(d));
        }
        if let Some(e) = self.endpoint {
            t.insert("endpoint", value(e));
        }
        if let Some(p) = self.pin_tools {
            t.insert("pin_tools", value(p));
        }
        ws.commit(Changed::CONFIG)?;
        Ok(Done::said(format!("updated mcp_config {}", self.name)))
    }
}

/// Remove the config. With `force`, bindings using it are removed (and their tokens revoked).
///
/// # Errors
/// Unknown config, or in use without `force`.
pub fn delete(d: Delete, ws: &mut Workspace) -> Result<Done, ManageError> {
    let i = ws.config_index(&d.name)?;
    let (name, id) = {
        let c = ws
            .config
            .mcp_config(&d.name)
            .ok_or_else(|| ManageError::NotFound(d.name.clone()))?;
        (c.name.clone(), c.id.clone())
    };
    let matches = |b: super::Bound<'_>| {
        b.kind == crate::state::token::Kind::Mcp && (b.config == name || b.config == id)
    };
    let used = users(ws, matches);
    if !used.is_empty() && !d.force {
        return Err(ManageError::Conflict(format!(
            "mcp_config {name:?} is used by {}; remove those bindings first or pass --force",
            used.join(", ")
        )));
    }
    unbind_where(ws, matches);
    ws.configs_mut().remove(i);
    // A config created later under the same name gets a new id; its approvals go with this one.
    let approvals = ws.approvals.configs.remove(&id).is_some();
    ws.commit(Changed {
        config: true,
        devboxes: !used.is_empty(),
        tokens: !used.is_empty(),
        approvals,
        ..Default::default()
    })?;
    Ok(Done::said(format!("deleted mcp_config {}", d.name)))
}
