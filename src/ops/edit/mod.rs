//! Operator edits behind the CLI and the admin socket, one file per entity: [`mcp_config`],
//! [`gateway_config`] and [`network_policy`] (in `hub.toml`, comments and formatting kept via
//! toml_edit), [`secret`], and [`devbox`] (devboxes, their bindings and tokens).
//!
//! One layer: each operation is one struct that is at once the CLI's arguments (clap), the admin
//! socket's payload (serde) and the edit's input, with an `apply` that performs it. No field is copied
//! from one shape into another on the way, and nothing is formatted to a string and parsed back.
//!
//! Every edit is applied in memory, the result is validated as a whole snapshot (the same path as
//! start-up), and only then written atomically; a running hub picks it up within a second. Edits are
//! serialised with a lock file so two admins cannot lose each other's changes.

pub mod devbox;
pub mod gateway_config;
pub mod mcp_config;
pub mod network_policy;
pub mod secret;
pub mod tools;

use std::fs::File;
use std::path::{Path, PathBuf};

use toml_edit::{Array, ArrayOfTables, DocumentMut, Item};

use crate::config::{self, Config, ConfigError, Paths};
use crate::runtime::Snapshot;
use crate::state::devboxes::Devboxes;
use crate::state::secrets::Secrets;
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
    /// An argument is malformed (a name with characters names cannot have, an empty secret).
    #[error("{0}")]
    BadInput(String),
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

pub(super) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ManageError {
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
    /// Tool approvals.
    pub approvals: crate::state::tools::Approvals,
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
            ConfigError::Invalid(vec![config::ConfigIssue {
                file: config_file.display().to_string(),
                path: String::new(),
                message: e.message().to_string(),
            }])
        })?;
        let secrets = Secrets::load(&config.paths.secrets_file).map_err(ConfigError::Invalid)?;
        let devboxes = Devboxes::load(&config.paths.devboxes_file).map_err(ConfigError::Invalid)?;
        let tokens = Tokens::load(&config.paths.tokens_file).map_err(ConfigError::Invalid)?;
        let approvals = crate::state::tools::Approvals::load(&config.paths.tool_approvals_file)
            .map_err(ConfigError::Invalid)?;
        Ok(Self {
            approvals,
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
    pub(super) fn commit(&mut self, what: Changed) -> Result<(), ManageError> {
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
        if what.approvals {
            self.approvals
                .save(&p.tool_approvals_file)
                .map_err(io(format!("writing {}", p.tool_approvals_file.display())))?;
        }
        self.config = config;
        Ok(())
    }

    pub(super) fn config_index(&self, name_or_id: &str) -> Result<usize, ManageError> {
        let c = self.config.mcp_config(name_or_id).ok_or_else(|| {
            ManageError::NotFound(format!(
                "no mcp_config named {name_or_id:?}; see `mcp-hub mcp-config list`"
            ))
        })?;
        self.table_index("mcp_configs", &c.name)
    }

    /// Where `[[key]]` entry `name` is in the document.
    pub(super) fn table_index(&self, key: &str, name: &str) -> Result<usize, ManageError> {
        self.doc
            .get(key)
            .and_then(Item::as_array_of_tables)
            .ok_or_else(|| ManageError::NotFound(format!("hub.toml has no [[{key}]]")))?
            .iter()
            .position(|t| t.get("name").and_then(Item::as_str) == Some(name))
            .ok_or_else(|| ManageError::NotFound(format!("{key} {name:?} not found in the file")))
    }

    pub(super) fn configs_mut(&mut self) -> &mut ArrayOfTables {
        self.tables_mut("mcp_configs")
    }

    /// An array of tables in hub.toml (created when absent), edited in place so comments survive.
    pub(super) fn tables_mut(&mut self, key: &str) -> &mut ArrayOfTables {
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

/// Which files an edit changed, so `commit` writes only those.
#[derive(Default, Clone, Copy)]
pub(super) struct Changed {
    pub(super) config: bool,
    pub(super) secrets: bool,
    pub(super) devboxes: bool,
    pub(super) tokens: bool,
    pub(super) approvals: bool,
}

impl Changed {
    /// `hub.toml` only.
    pub(super) const CONFIG: Self = Self::only(true, false, false, false);
    /// The secrets file only.
    pub(super) const SECRETS: Self = Self::only(false, true, false, false);
    /// The devboxes file only.
    pub(super) const DEVBOXES: Self = Self::only(false, false, true, false);
    /// Issued tokens only.
    pub(super) const TOKENS: Self = Self::only(false, false, false, true);
    /// Devboxes and their tokens together.
    pub(super) const DEVBOXES_AND_TOKENS: Self = Self::only(false, false, true, true);
    /// Tool approvals only.
    pub(super) const APPROVALS: Self = Self {
        approvals: true,
        ..Self::only(false, false, false, false)
    };

    const fn only(config: bool, secrets: bool, devboxes: bool, tokens: bool) -> Self {
        Self {
            config,
            secrets,
            devboxes,
            tokens,
            approvals: false,
        }
    }
}

/// A fresh id for a new config: `prefix` and 24 random hex digits.
pub(super) fn random_id(prefix: &str) -> Result<String, ManageError> {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).map_err(|e| ManageError::Io {
        context: "random id".into(),
        source: std::io::Error::other(e),
    })?;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{prefix}{hex}"))
}

pub(super) fn string_array(items: &[String]) -> Array {
    items.iter().map(String::as_str).collect()
}

/// `delete NAME [--force]` of an MCP or gateway config, a secret or a network policy: refused while something
/// uses it, unless forced.
#[derive(Debug, Clone, clap::Args, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delete {
    /// Name (or, for an MCP or gateway config, id).
    pub name: String,
    /// Delete it even in use: the bindings that use a config or secret are removed (their tokens
    /// revoked); the devboxes that use a policy are left without network.
    #[arg(long)]
    pub force: bool,
}

/// What an edit did, for the operator: a sentence, and the environment lines (`RL_MCP_URL`, tokens)
/// where the operation produces them.
#[derive(Debug, Default)]
pub struct Done {
    /// What happened, for people.
    pub message: String,
    /// `ENV_VAR=value` lines for the devbox.
    pub env: Vec<(String, String)>,
}

impl Done {
    pub(super) fn said(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            env: Vec::new(),
        }
    }
}

/// One binding of either kind, as the delete checks see it.
#[derive(Clone, Copy)]
pub(super) struct Bound<'a> {
    /// Which gateway it is for.
    pub(super) kind: crate::state::token::Kind,
    /// The MCP config or gateway config it names.
    pub(super) config: &'a str,
    /// The secret it names.
    pub(super) secret: &'a str,
}

/// Every binding of `d`, with its env var.
fn bound(d: &crate::state::devboxes::Devbox) -> impl Iterator<Item = (&String, Bound<'_>)> {
    use crate::state::token::Kind;
    let mcp = d.mcp.iter().map(|(e, b)| {
        let b = Bound {
            kind: Kind::Mcp,
            config: &b.mcp_config,
            secret: &b.secret,
        };
        (e, b)
    });
    let agent = d.gateways.iter().map(|(e, b)| {
        let b = Bound {
            kind: Kind::Agent,
            config: &b.gateway_config,
            secret: &b.secret,
        };
        (e, b)
    });
    mcp.chain(agent)
}

/// Devbox bindings that use a config or a secret.
pub(super) fn users(ws: &Workspace, pred: impl Fn(Bound<'_>) -> bool) -> Vec<String> {
    ws.devboxes
        .list
        .iter()
        .flat_map(|d| {
            bound(d)
                .filter(|(_, b)| pred(*b))
                .map(move |(env, _)| format!("{}/{env}", d.name))
        })
        .collect()
}

/// Remove every binding matching `pred` and revoke its token (forced deletes).
pub(super) fn unbind_where(ws: &mut Workspace, pred: impl Fn(Bound<'_>) -> bool) {
    for d in &mut ws.devboxes.list {
        let gone: Vec<String> = bound(d)
            .filter(|(_, b)| pred(*b))
            .map(|(e, _)| e.clone())
            .collect();
        for env in gone {
            d.mcp.remove(&env);
            d.gateways.remove(&env);
            ws.tokens.revoke(&d.name, &env);
        }
    }
}
