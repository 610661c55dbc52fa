//! `gateway-config create|update|delete`: the REST APIs behind the agent gateway, in `hub.toml`'s
//! `[[gateway_configs]]`. The system configs (`anthropic`, `openai`) are built in and refuse edits.

use serde::{Deserialize, Serialize};
use toml_edit::{InlineTable, Table, value};

use super::{
    Bound, Changed, Delete, Done, ManageError, Workspace, string_array, unbind_where, users,
};
use crate::state::fsutil;
use crate::state::token::Kind;

/// How the API takes its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthType {
    /// `Authorization: Bearer <secret>`.
    Bearer,
    /// `<--auth-key>: <secret>`.
    Header,
}

/// Define a REST API behind the agent gateway.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Create {
    /// Unique name, e.g. anthropic-prod.
    #[arg(long)]
    pub name: String,
    /// The API's base URL, e.g. `https://api.openai.com/v1` (requests for /PATH go to its path + /PATH).
    #[arg(long)]
    pub endpoint: String,
    /// Where the secret goes: bearer (Authorization: Bearer) or header (--auth-key).
    #[arg(long)]
    pub auth_type: AuthType,
    /// Header carrying the secret with --auth-type header, e.g. x-api-key.
    #[arg(long, required_if_eq("auth_type", "header"))]
    pub auth_key: Option<String>,
    /// Free text.
    #[arg(long)]
    pub description: Option<String>,
    /// Requests allowed, as "METHOD /path/glob" (repeat or comma-separate); default every request.
    #[arg(long = "allowed-paths", value_delimiter = ',', num_args = 1..)]
    #[serde(default)]
    pub allowed_paths: Option<Vec<String>>,
    /// Globs the request body's "model" must match (repeat or comma-separate); default any model.
    #[arg(long = "allowed-models", value_delimiter = ',', num_args = 1..)]
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
}

/// Change a gateway config's fields.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    /// Name or id.
    pub name: String,
    /// New base URL.
    #[arg(long)]
    pub endpoint: Option<String>,
    /// New auth type (bearer or header; header needs --auth-key).
    #[arg(long)]
    pub auth_type: Option<AuthType>,
    /// New header for --auth-type header.
    #[arg(long)]
    pub auth_key: Option<String>,
    /// New description.
    #[arg(long)]
    pub description: Option<String>,
    /// New allowed paths (replace the old ones); `--allowed-paths '*'` is not a path: use
    /// `--clear-allowed-paths` to allow every request again.
    #[arg(long = "allowed-paths", value_delimiter = ',', num_args = 1..)]
    pub allowed_paths: Option<Vec<String>>,
    /// Allow every request again.
    #[arg(long, conflicts_with = "allowed_paths")]
    #[serde(default)]
    pub clear_allowed_paths: bool,
    /// New allowed models (replace the old ones).
    #[arg(long = "allowed-models", value_delimiter = ',', num_args = 1..)]
    pub allowed_models: Option<Vec<String>>,
    /// Allow any model again.
    #[arg(long, conflicts_with = "allowed_models")]
    #[serde(default)]
    pub clear_allowed_models: bool,
}

fn auth_mechanism(kind: AuthType, key: Option<&str>) -> Result<InlineTable, ManageError> {
    let mut a = InlineTable::new();
    match (kind, key) {
        (AuthType::Bearer, None) => {
            a.insert("type", "bearer".into());
        }
        (AuthType::Bearer, Some(_)) => {
            return Err(ManageError::BadInput(
                "--auth-key goes with --auth-type header; bearer always uses Authorization".into(),
            ));
        }
        (AuthType::Header, Some(k)) => {
            a.insert("type", "header".into());
            a.insert("key", k.into());
        }
        (AuthType::Header, None) => {
            return Err(ManageError::BadInput(
                "--auth-type header needs --auth-key HEADER, e.g. --auth-key x-api-key".into(),
            ));
        }
    }
    Ok(a)
}

/// Where `name` is in `[[gateway_configs]]`; system configs and unknown names are refused.
fn index(ws: &Workspace, name: &str) -> Result<usize, ManageError> {
    let c = ws.config.gateway_config(name).ok_or_else(|| {
        ManageError::NotFound(format!(
            "no gateway_config named {name:?}; see `mcp-hub gateway-config list`"
        ))
    })?;
    if c.system {
        return Err(ManageError::Conflict(format!(
            "{:?} is a system config and cannot be changed or deleted; create your own with \
             `mcp-hub gateway-config create --name {}-custom --endpoint {} ...`",
            c.name, c.name, c.endpoint
        )));
    }
    let name = c.name.clone();
    ws.table_index("gateway_configs", &name)
}

impl Create {
    /// Append the config; the message names its new id.
    ///
    /// # Errors
    /// Invalid fields or duplicate name.
    pub fn apply(self, ws: &mut Workspace) -> Result<Done, ManageError> {
        if ws.config.gateway_config(&self.name).is_some() {
            return Err(ManageError::Conflict(format!(
                "a gateway_config named {:?} already exists; use `gateway-config update`",
                self.name
            )));
        }
        let id = super::random_id("gwc_")?;
        let mut t = Table::new();
        t.insert("id", value(&id));
        t.insert("name", value(&self.name));
        t.insert("endpoint", value(&self.endpoint));
        t.insert(
            "auth_mechanism",
            value(auth_mechanism(self.auth_type, self.auth_key.as_deref())?),
        );
        if let Some(d) = &self.description {
            t.insert("description", value(d));
        }
        if let Some(p) = &self.allowed_paths {
            t.insert("allowed_paths", value(string_array(p)));
        }
        if let Some(m) = &self.allowed_models {
            t.insert("allowed_models", value(string_array(m)));
        }
        t.insert(
            "create_time_ms",
            value(i64::try_from(fsutil::now_ms()).unwrap_or(i64::MAX)),
        );
        ws.tables_mut("gateway_configs").push(t);
        ws.commit(Changed::CONFIG)?;
        Ok(Done::said(format!(
            "created gateway_config {} ({id})",
            self.name
        )))
    }
}

impl Update {
    /// Change only the given fields.
    ///
    /// # Errors
    /// Unknown or system config, or invalid values.
    pub fn apply(self, ws: &mut Workspace) -> Result<Done, ManageError> {
        let i = index(ws, &self.name)?;
        let current = ws
            .config
            .gateway_config(&self.name)
            .map(|c| (c.auth.kind(), c.auth.key().map(str::to_string)));
        let t = ws
            .tables_mut("gateway_configs")
            .get_mut(i)
            .ok_or_else(|| ManageError::NotFound(self.name.clone()))?;
        if let Some(e) = self.endpoint {
            t.insert("endpoint", value(e));
        }
        if self.auth_type.is_some() || self.auth_key.is_some() {
            let kind = match (self.auth_type, &current) {
                (Some(k), _) => k,
                (None, Some(("header", _))) => AuthType::Header,
                (None, _) => AuthType::Bearer,
            };
            let key = self
                .auth_key
                .or_else(|| current.and_then(|(_, k)| k))
                .filter(|_| kind == AuthType::Header);
            t.insert(
                "auth_mechanism",
                value(auth_mechanism(kind, key.as_deref())?),
            );
        }
        if let Some(d) = self.description {
            t.insert("description", value(d));
        }
        if let Some(p) = &self.allowed_paths {
            t.insert("allowed_paths", value(string_array(p)));
        }
        if self.clear_allowed_paths {
            t.remove("allowed_paths");
        }
        if let Some(m) = &self.allowed_models {
            t.insert("allowed_models", value(string_array(m)));
        }
        if self.clear_allowed_models {
            t.remove("allowed_models");
        }
        ws.commit(Changed::CONFIG)?;
        Ok(Done::said(format!("updated gateway_config {}", self.name)))
    }
}

/// Remove the config. With `force`, bindings using it are removed (and their tokens revoked).
///
/// # Errors
/// Unknown or system config, or in use without `force`.
pub fn delete(d: Delete, ws: &mut Workspace) -> Result<Done, ManageError> {
    let i = index(ws, &d.name)?;
    let (name, id) = match ws.config.gateway_config(&d.name) {
        Some(c) => (c.name.clone(), c.id.clone()),
        None => return Err(ManageError::NotFound(d.name.clone())),
    };
    let matches = |b: Bound<'_>| b.kind == Kind::Agent && (b.config == name || b.config == id);
    let used = users(ws, matches);
    if !used.is_empty() && !d.force {
        return Err(ManageError::Conflict(format!(
            "gateway_config {name:?} is used by {}; remove those bindings first or pass --force",
            used.join(", ")
        )));
    }
    unbind_where(ws, matches);
    ws.tables_mut("gateway_configs").remove(i);
    ws.commit(Changed {
        config: true,
        devboxes: !used.is_empty(),
        tokens: !used.is_empty(),
        ..Default::default()
    })?;
    Ok(Done::said(format!("deleted gateway_config {}", d.name)))
}
