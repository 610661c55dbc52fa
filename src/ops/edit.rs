//! Operator edits behind the CLI: MCP configs (in `hub.toml`, comments and formatting kept via
//! toml_edit), secrets, devboxes and their tokens.
//!
//! Every edit is applied in memory, the result is validated as a whole snapshot (the same path as
//! start-up), and only then written atomically; a running hub picks it up within a second. Edits are
//! serialised with a lock file so two admins cannot lose each other's changes.

use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};

use crate::config::{self, Config, ConfigError, Paths};
use crate::runtime::Snapshot;
use crate::state::devboxes::{Devbox, Devboxes, McpBinding};
use crate::state::secrets::{Secret, Secrets};
use crate::state::tokens::Tokens;
use crate::state::{self, fsutil, load_token_key};

/// Why an edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The result would be invalid (or the current files already are).
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The named object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The edit conflicts with existing state (e.g. in use, already exists).
    #[error("{0}")]
    Conflict(String),
    /// File errors.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Underlying error.
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ManageError {
    let context = context.into();
    move |source| ManageError::Io { context, source }
}

/// An exclusive lock on the state directory for the duration of an edit.
pub struct EditLock {
    _lock: nix::fcntl::Flock<File>,
}

/// Take the edit lock (creating the state directory and token key if needed).
///
/// # Errors
/// File errors.
pub fn lock(paths: &Paths) -> Result<EditLock, ManageError> {
    state::init(paths).map_err(io(format!("initialising {}", paths.state_dir.display())))?;
    let p = paths.state_dir.join(".edit.lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(io(format!("opening {}", p.display())))?;
    let lock =
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
            ManageError::Io {
                context: format!("locking {}", p.display()),
                source: e.into(),
            }
        })?;
    Ok(EditLock { _lock: lock })
}

/// Current files, loaded for editing.
pub struct Workspace {
    /// hub.toml path.
    pub config_file: PathBuf,
    /// hub.toml text as a formatting-preserving document.
    pub doc: DocumentMut,
    /// Validated config.
    pub config: Config,
    /// Secrets.
    pub secrets: Secrets,
    /// Devboxes.
    pub devboxes: Devboxes,
    /// Issued tokens.
    pub tokens: Tokens,
}

impl Workspace {
    /// Load everything (the config must be valid).
    ///
    /// # Errors
    /// Invalid or unreadable files.
    pub fn load(config_file: &Path) -> Result<Self, ManageError> {
        let text = config::read(config_file)?;
        let config = config::parse(&text, config_file)?;
        let doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
            ManageError::Conflict(format!("{}: {}", config_file.display(), e.message()))
        })?;
        let secrets = Secrets::load(&config.paths.secrets_file).map_err(ConfigError::Invalid)?;
        let devboxes = Devboxes::load(&config.paths.devboxes_file).map_err(ConfigError::Invalid)?;
        let tokens = Tokens::load(&config.paths.tokens_file).map_err(ConfigError::Invalid)?;
        Ok(Self {
            config_file: config_file.to_path_buf(),
            doc,
            config,
            secrets,
            devboxes,
            tokens,
        })
    }

    /// Paths from the config.
    pub fn paths(&self) -> &Paths {
        &self.config.paths
    }

    /// Validate the edited state as a whole, exactly as the service would load it.
    fn validate(&self) -> Result<Config, ManageError> {
        let config = config::parse(&self.doc.to_string(), &self.config_file)?;
        let key = load_token_key(&self.config.paths.token_key_file)
            .map_err(|e| ConfigError::Invalid(vec![e]))?;
        Snapshot::build(
            config::parse(&self.doc.to_string(), &self.config_file)?,
            &self.secrets,
            self.devboxes.clone(),
            self.tokens.clone(),
            key.as_ref(),
        )?;
        Ok(config)
    }

    /// Validate, then write whatever changed. Order: secrets, config, devboxes, tokens, so a reader never
    /// sees a binding before what it refers to.
    fn commit(&mut self, what: Changed) -> Result<(), ManageError> {
        let config = self.validate()?;
        let p = self.config.paths.clone();
        if what.secrets {
            self.secrets
                .save(&p.secrets_file)
                .map_err(io(format!("writing {}", p.secrets_file.display())))?;
        }
        if what.config {
            let text = self.doc.to_string();
            fsutil::write_atomic(&self.config_file, text.as_bytes(), 0o640)
                .map_err(io(format!("writing {}", self.config_file.display())))?;
        }
        if what.devboxes {
            self.devboxes
                .save(&p.devboxes_file)
                .map_err(io(format!("writing {}", p.devboxes_file.display())))?;
        }
        if what.tokens {
            self.tokens
                .save(&p.tokens_file)
                .map_err(io(format!("writing {}", p.tokens_file.display())))?;
        }
        self.config = config;
        Ok(())
    }

    fn config_index(&self, name_or_id: &str) -> Result<usize, ManageError> {
        let c = self.config.mcp_config(name_or_id).ok_or_else(|| {
            ManageError::NotFound(format!(
                "no mcp_config named {name_or_id:?}; see `mcp-hub mcp-config list`"
            ))
        })?;
        let name = c.name.clone();
        self.doc
            .get("mcp_configs")
            .and_then(Item::as_array_of_tables)
            .ok_or_else(|| ManageError::NotFound("hub.toml has no [[mcp_configs]]".into()))?
            .iter()
            .position(|t| t.get("name").and_then(Item::as_str) == Some(name.as_str()))
            .ok_or_else(|| {
                ManageError::NotFound(format!("mcp_config {name_or_id:?} not found in the file"))
            })
    }

    fn configs_mut(&mut self) -> &mut ArrayOfTables {
        self.tables_mut("mcp_configs")
    }

    /// An array of tables in hub.toml (created when absent), edited in place so comments survive.
    fn tables_mut(&mut self, key: &str) -> &mut ArrayOfTables {
        if !self.doc.contains_key(key) {
            self.doc
                .insert(key, Item::ArrayOfTables(ArrayOfTables::new()));
        }
        match self.doc.get_mut(key).and_then(Item::as_array_of_tables_mut) {
            Some(a) => a,
            None => unreachable!("validated as an array of tables"),
        }
    }
}

#[derive(Default, Clone, Copy)]
struct Changed {
    config: bool,
    secrets: bool,
    devboxes: bool,
    tokens: bool,
}

impl Changed {
    /// `hub.toml` only.
    const CONFIG: Self = Self::only(true, false, false, false);
    /// The secrets file only.
    const SECRETS: Self = Self::only(false, true, false, false);
    /// The devboxes file only.
    const DEVBOXES: Self = Self::only(false, false, true, false);
    /// Issued tokens only.
    const TOKENS: Self = Self::only(false, false, false, true);
    /// Devboxes and their tokens together.
    const DEVBOXES_AND_TOKENS: Self = Self::only(false, false, true, true);

    const fn only(config: bool, secrets: bool, devboxes: bool, tokens: bool) -> Self {
        Self {
            config,
            secrets,
            devboxes,
            tokens,
        }
    }
}

fn string_array(items: &[String]) -> Array {
    items.iter().map(String::as_str).collect()
}

/// Fields of a new MCP config.
#[derive(Debug, Clone)]
pub struct NewMcpConfig {
    /// Unique name.
    pub name: String,
    /// Upstream URL.
    pub endpoint: String,
    /// Glob patterns.
    pub allowed_tools: Vec<String>,
    /// Optional description.
    pub description: Option<String>,
    /// Optional (header, value template).
    pub credential: Option<(String, String)>,
}

fn random_id() -> Result<String, ManageError> {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).map_err(|e| ManageError::Io {
        context: "random id".into(),
        source: std::io::Error::other(e),
    })?;
    Ok(format!(
        "mcp_{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

/// `mcp-config create`. Returns the new id.
///
/// # Errors
/// Invalid fields or duplicate name.
pub fn mcp_config_create(ws: &mut Workspace, new: NewMcpConfig) -> Result<String, ManageError> {
    if ws.config.mcp_config(&new.name).is_some() {
        return Err(ManageError::Conflict(format!(
            "an mcp_config named {:?} already exists; use `mcp-config update`",
            new.name
        )));
    }
    let id = random_id()?;
    let mut t = Table::new();
    t.insert("id", value(&id));
    t.insert("name", value(&new.name));
    t.insert("endpoint", value(&new.endpoint));
    t.insert("allowed_tools", value(string_array(&new.allowed_tools)));
    if let Some(d) = &new.description {
        t.insert("description", value(d));
    }
    t.insert(
        "create_time_ms",
        value(i64::try_from(fsutil::now_ms()).unwrap_or(i64::MAX)),
    );
    if let Some((h, v)) = &new.credential {
        let mut c = toml_edit::InlineTable::new();
        c.insert("header", h.as_str().into());
        c.insert("value", v.as_str().into());
        t.insert("credential", value(c));
    }
    ws.configs_mut().push(t);
    ws.commit(Changed::CONFIG)?;
    Ok(id)
}

/// `mcp-config update`: only the given fields change.
///
/// # Errors
/// Unknown config or invalid values.
pub fn mcp_config_update(
    ws: &mut Workspace,
    name_or_id: &str,
    allowed_tools: Option<Vec<String>>,
    description: Option<String>,
    endpoint: Option<String>,
) -> Result<(), ManageError> {
    let i = ws.config_index(name_or_id)?;
    let t = ws
        .configs_mut()
        .get_mut(i)
        .ok_or_else(|| ManageError::NotFound(name_or_id.to_string()))?;
    if let Some(a) = allowed_tools {
        t.insert("allowed_tools", value(string_array(&a)));
    }
    if let Some(d) = description {
        t.insert("description", value(d));
    }
    if let Some(e) = endpoint {
        t.insert("endpoint", value(e));
    }
    ws.commit(Changed::CONFIG)
}

/// Devbox bindings that use an mcp_config or a secret.
fn users(ws: &Workspace, pred: impl Fn(&McpBinding) -> bool) -> Vec<String> {
    ws.devboxes
        .list
        .iter()
        .flat_map(|d| {
            d.mcp
                .iter()
                .filter(|(_, b)| pred(b))
                .map(move |(env, _)| format!("{}/{env}", d.name))
        })
        .collect()
}

/// Remove every binding matching `pred` and revoke its token (forced deletes).
fn unbind_where(ws: &mut Workspace, pred: impl Fn(&McpBinding) -> bool) {
    for d in &mut ws.devboxes.list {
        let gone: Vec<String> = d
            .mcp
            .iter()
            .filter(|(_, b)| pred(b))
            .map(|(e, _)| e.clone())
            .collect();
        for env in gone {
            d.mcp.remove(&env);
            ws.tokens.revoke(&d.name, &env);
        }
    }
}

/// `mcp-config delete`. With `force`, bindings using it are removed (and their tokens revoked).
///
/// # Errors
/// Unknown config, or in use without `force`.
pub fn mcp_config_delete(
    ws: &mut Workspace,
    name_or_id: &str,
    force: bool,
) -> Result<(), ManageError> {
    let i = ws.config_index(name_or_id)?;
    let (name, id) = {
        let c = ws
            .config
            .mcp_config(name_or_id)
            .ok_or_else(|| ManageError::NotFound(name_or_id.into()))?;
        (c.name.clone(), c.id.clone())
    };
    let matches = |b: &McpBinding| b.mcp_config == name || b.mcp_config == id;
    let used = users(ws, matches);
    if !used.is_empty() && !force {
        return Err(ManageError::Conflict(format!(
            "mcp_config {name:?} is used by {}; remove those bindings first or pass --force",
            used.join(", ")
        )));
    }
    unbind_where(ws, matches);
    ws.configs_mut().remove(i);
    ws.commit(Changed {
        config: true,
        devboxes: !used.is_empty(),
        tokens: !used.is_empty(),
        ..Default::default()
    })
}

/// `secret create` (or replace with `replace`).
///
/// # Errors
/// Invalid name/value, or exists without `replace`.
pub fn secret_create(
    ws: &mut Workspace,
    name: &str,
    value: SecretString,
    replace: bool,
) -> Result<(), ManageError> {
    if ws.secrets.map.contains_key(name) && !replace {
        return Err(ManageError::Conflict(format!(
            "secret {name:?} exists; pass --replace to change its value"
        )));
    }
    if !config::validate::is_valid_name(name) {
        return Err(ManageError::Conflict(format!(
            "{name:?}: secret names must be 1-64 characters of A-Z a-z 0-9 _ - ."
        )));
    }
    let v = value
        .expose_secret()
        .trim_end_matches(['\n', '\r'])
        .to_string();
    if v.is_empty() {
        return Err(ManageError::Conflict(
            "the secret value is empty (it is read from stdin)".into(),
        ));
    }
    ws.secrets.map.insert(
        name.to_string(),
        Secret {
            value: SecretString::from(v),
            create_time_ms: fsutil::now_ms(),
        },
    );
    ws.commit(Changed::SECRETS)
}

/// `secret delete`.
///
/// # Errors
/// Unknown or in use without `force`.
pub fn secret_delete(ws: &mut Workspace, name: &str, force: bool) -> Result<(), ManageError> {
    if !ws.secrets.map.contains_key(name) {
        return Err(ManageError::NotFound(format!("no secret named {name:?}")));
    }
    let used = users(ws, |b| b.secret == name);
    if !used.is_empty() && !force {
        return Err(ManageError::Conflict(format!(
            "secret {name:?} is used by {}; pass --force to remove those bindings too",
            used.join(", ")
        )));
    }
    unbind_where(ws, |b| b.secret == name);
    ws.secrets.map.remove(name);
    ws.commit(Changed {
        secrets: true,
        devboxes: !used.is_empty(),
        tokens: !used.is_empty(),
        ..Default::default()
    })
}

/// Fields of a `[[network_policies]]` entry: all optional, so `update` changes only what is given.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFields {
    /// Free text.
    pub description: Option<String>,
    /// Allow every (public) destination.
    pub allow_all: Option<bool>,
    /// Host names (`*.` wildcards) the devbox may reach.
    pub allowed_hostnames: Option<Vec<String>>,
    /// Other devboxes.
    pub allow_devbox_to_devbox: Option<bool>,
    /// The MCP gateway.
    pub allow_mcp_gateway: Option<bool>,
    /// The agent gateway hosts.
    pub allow_agent_gateway: Option<bool>,
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

fn set_policy_fields(t: &mut Table, f: PolicyFields) {
    if let Some(d) = f.description {
        t.insert("description", value(d));
    }
    for (k, v) in [
        ("allow_all", f.allow_all),
        ("allow_devbox_to_devbox", f.allow_devbox_to_devbox),
        ("allow_mcp_gateway", f.allow_mcp_gateway),
        ("allow_agent_gateway", f.allow_agent_gateway),
    ] {
        if let Some(v) = v {
            t.insert(k, value(v));
        }
    }
    if let Some(h) = f.allowed_hostnames {
        t.insert("allowed_hostnames", value(string_array(&h)));
    }
}

/// `network-policy create`.
///
/// # Errors
/// Duplicate name or invalid fields.
pub fn network_policy_create(
    ws: &mut Workspace,
    name: &str,
    f: PolicyFields,
) -> Result<(), ManageError> {
    if ws.config.network_policy(name).is_some() {
        return Err(ManageError::Conflict(format!(
            "a network policy named {name:?} exists; use `network-policy update`"
        )));
    }
    let mut t = Table::new();
    t.insert("name", value(name));
    set_policy_fields(&mut t, f);
    ws.tables_mut("network_policies").push(t);
    ws.commit(Changed::CONFIG)
}

/// `network-policy update`: only the given fields change.
///
/// # Errors
/// Unknown policy or invalid fields.
pub fn network_policy_update(
    ws: &mut Workspace,
    name: &str,
    f: PolicyFields,
) -> Result<(), ManageError> {
    let i = policy_index(ws, name)?;
    if let Some(t) = ws.tables_mut("network_policies").get_mut(i) {
        set_policy_fields(t, f);
    }
    ws.commit(Changed::CONFIG)
}

/// `network-policy delete`. With `force`, devboxes using it are left with no policy (no network).
///
/// # Errors
/// Unknown policy, or in use without `force`.
pub fn network_policy_delete(
    ws: &mut Workspace,
    name: &str,
    force: bool,
) -> Result<(), ManageError> {
    let i = policy_index(ws, name)?;
    let users: Vec<String> = ws
        .devboxes
        .list
        .iter()
        .filter(|d| d.network_policy.as_deref() == Some(name))
        .map(|d| d.name.clone())
        .collect();
    if !users.is_empty() && !force {
        return Err(ManageError::Conflict(format!(
            "network policy {name:?} is used by devbox {}; pass --force to leave them without network",
            users.join(", ")
        )));
    }
    for d in &mut ws.devboxes.list {
        if d.network_policy.as_deref() == Some(name) {
            d.network_policy = None;
        }
    }
    ws.tables_mut("network_policies").remove(i);
    ws.commit(Changed {
        config: true,
        devboxes: !users.is_empty(),
        ..Default::default()
    })
}

/// A binding request from the CLI: `ENV_VAR=mcp_config:secret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingSpec {
    /// Env var in the devbox.
    pub env_var: String,
    /// MCP config name or id.
    pub mcp_config: String,
    /// Secret name.
    pub secret: String,
}

impl std::str::FromStr for BindingSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (env, rest) = s
            .split_once('=')
            .ok_or("expected ENV_VAR=MCP_CONFIG:SECRET")?;
        let (cfg, secret) = rest
            .split_once(':')
            .ok_or("expected ENV_VAR=MCP_CONFIG:SECRET")?;
        Ok(Self {
            env_var: env.into(),
            mcp_config: cfg.into(),
            secret: secret.into(),
        })
    }
}

/// `devbox create`: the devbox, its bindings, and one fresh token per binding.
///
/// # Errors
/// Exists, or invalid bindings.
pub fn devbox_create(
    ws: &mut Workspace,
    name: &str,
    addresses: Vec<IpAddr>,
    network_policy: Option<String>,
    bindings: Vec<BindingSpec>,
) -> Result<(), ManageError> {
    if ws.devboxes.get(name).is_some() {
        return Err(ManageError::Conflict(format!(
            "devbox {name:?} exists; use `devbox bind` to add servers"
        )));
    }
    ws.devboxes.list.push(Devbox {
        name: name.into(),
        addresses,
        create_time_ms: fsutil::now_ms(),
        network_policy,
        mcp: Default::default(),
    });
    devbox_bind_inner(ws, name, bindings)?;
    ws.commit(Changed::DEVBOXES_AND_TOKENS)
}

fn devbox_bind_inner(
    ws: &mut Workspace,
    name: &str,
    bindings: Vec<BindingSpec>,
) -> Result<(), ManageError> {
    let d = ws
        .devboxes
        .list
        .iter_mut()
        .find(|d| d.name == name)
        .ok_or_else(|| ManageError::NotFound(format!("no devbox named {name:?}")))?;
    for b in bindings {
        if d.mcp.contains_key(&b.env_var) {
            return Err(ManageError::Conflict(format!(
                "{name}/{} is already bound; use `devbox unbind` first",
                b.env_var
            )));
        }
        d.mcp.insert(
            b.env_var.clone(),
            McpBinding {
                mcp_config: b.mcp_config,
                secret: b.secret,
            },
        );
        ws.tokens
            .issue(name, &b.env_var)
            .map_err(|e| ManageError::Io {
                context: "issuing token".into(),
                source: std::io::Error::other(e),
            })?;
    }
    Ok(())
}

/// `devbox bind`: add servers to an existing devbox.
///
/// # Errors
/// Unknown devbox or invalid bindings.
pub fn devbox_bind(
    ws: &mut Workspace,
    name: &str,
    bindings: Vec<BindingSpec>,
) -> Result<(), ManageError> {
    devbox_bind_inner(ws, name, bindings)?;
    ws.commit(Changed::DEVBOXES_AND_TOKENS)
}

/// `devbox unbind`: remove one server (and its token).
///
/// # Errors
/// Unknown devbox or binding.
pub fn devbox_unbind(ws: &mut Workspace, name: &str, env_var: &str) -> Result<(), ManageError> {
    let d = ws
        .devboxes
        .list
        .iter_mut()
        .find(|d| d.name == name)
        .ok_or_else(|| ManageError::NotFound(format!("no devbox named {name:?}")))?;
    if d.mcp.remove(env_var).is_none() {
        return Err(ManageError::NotFound(format!(
            "devbox {name:?} has no binding {env_var:?}"
        )));
    }
    ws.tokens.revoke(name, env_var);
    ws.commit(Changed::DEVBOXES_AND_TOKENS)
}

fn check_binding(ws: &Workspace, name: &str, env_var: &str) -> Result<(), ManageError> {
    let d = ws
        .devboxes
        .get(name)
        .ok_or_else(|| ManageError::NotFound(format!("no devbox named {name:?}")))?;
    if !d.mcp.contains_key(env_var) {
        return Err(ManageError::NotFound(format!(
            "devbox {name:?} has no binding {env_var:?}"
        )));
    }
    Ok(())
}

/// `devbox revoke`: the binding stays, its token stops working. `None` revokes every binding of the devbox.
///
/// # Errors
/// Unknown devbox or binding.
pub fn devbox_revoke(
    ws: &mut Workspace,
    name: &str,
    env_var: Option<&str>,
) -> Result<Vec<String>, ManageError> {
    let envs: Vec<String> = match env_var {
        Some(e) => {
            check_binding(ws, name, e)?;
            vec![e.to_string()]
        }
        None => ws
            .devboxes
            .get(name)
            .ok_or_else(|| ManageError::NotFound(format!("no devbox named {name:?}")))?
            .mcp
            .keys()
            .cloned()
            .collect(),
    };
    let revoked: Vec<String> = envs
        .into_iter()
        .filter(|e| ws.tokens.revoke(name, e))
        .collect();
    ws.commit(Changed::TOKENS)?;
    Ok(revoked)
}

/// `devbox rotate`: a new token for one binding; the old one stops working.
///
/// # Errors
/// Unknown devbox or binding.
pub fn devbox_rotate(ws: &mut Workspace, name: &str, env_var: &str) -> Result<(), ManageError> {
    check_binding(ws, name, env_var)?;
    ws.tokens
        .issue(name, env_var)
        .map_err(|e| ManageError::Io {
            context: "issuing token".into(),
            source: std::io::Error::other(e),
        })?;
    ws.commit(Changed::TOKENS)
}

/// `devbox set-policy`: name the devbox's network policy (`None`: no network at all).
///
/// # Errors
/// Unknown devbox or policy.
pub fn devbox_set_policy(
    ws: &mut Workspace,
    name: &str,
    policy: Option<String>,
) -> Result<(), ManageError> {
    let d = ws
        .devboxes
        .list
        .iter_mut()
        .find(|d| d.name == name)
        .ok_or_else(|| ManageError::NotFound(format!("no devbox named {name:?}")))?;
    d.network_policy = policy;
    ws.commit(Changed::DEVBOXES)
}

/// `devbox delete`: the devbox, its bindings and tokens.
///
/// # Errors
/// Unknown devbox.
pub fn devbox_delete(ws: &mut Workspace, name: &str) -> Result<(), ManageError> {
    let before = ws.devboxes.list.len();
    ws.devboxes.list.retain(|d| d.name != name);
    if ws.devboxes.list.len() == before {
        return Err(ManageError::NotFound(format!("no devbox named {name:?}")));
    }
    ws.tokens.tokens.remove(name);
    ws.commit(Changed::DEVBOXES_AND_TOKENS)
}

/// `devbox env`: `RL_MCP_URL` and one `ENV_VAR=token` per binding with a live token.
///
/// # Errors
/// Unknown devbox or missing token key.
pub fn devbox_env(ws: &Workspace, name: &str) -> Result<Vec<(String, String)>, ManageError> {
    let d = ws
        .devboxes
        .get(name)
        .ok_or_else(|| ManageError::NotFound(format!("no devbox named {name:?}")))?;
    let key = load_token_key(&ws.config.paths.token_key_file)
        .map_err(|e| ConfigError::Invalid(vec![e]))?
        .ok_or_else(|| ManageError::NotFound("no token key yet; create a devbox first".into()))?;
    let mut out = vec![("RL_MCP_URL".to_string(), ws.config.gateway.url.to_string())];
    for env in d.mcp.keys() {
        if let Some(id) = ws.tokens.get(name, env) {
            out.push((env.clone(), key.token(name, env, &id)));
        }
    }
    Ok(out)
}
