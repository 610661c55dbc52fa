//! The admin Unix socket: the CLI's edits, applied by the running service.
//!
//! One code path for every mutating operation: the CLI builds a `Request`; when the service's socket
//! is there it sends it (one JSON line each way) and the service applies it with `apply` and reloads
//! synchronously, so a created token works the moment the command returns; otherwise the CLI calls
//! `apply` itself on the files. The socket is mode 0660 in the service's runtime directory, so the
//! service's group is who may administer it, without read access to the key or secrets files.

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::ops::edit::{self, BindingSpec, ManageError, NewMcpConfig, Workspace};
use crate::runtime::{Live, Snapshot};

/// Largest request line accepted on the socket.
const MAX_REQUEST: usize = 1 << 20;

/// A mutating operation (and `devbox env`, which needs the key only the service can read).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// `devbox create`.
    DevboxCreate {
        name: String,
        addresses: Vec<IpAddr>,
        network_policy: Option<String>,
        mcp: Vec<String>,
    },
    /// `devbox bind`.
    DevboxBind { name: String, mcp: Vec<String> },
    /// `devbox unbind`.
    DevboxUnbind { name: String, env_var: String },
    /// `devbox set-policy`.
    DevboxSetPolicy {
        name: String,
        policy: Option<String>,
    },
    /// `devbox revoke`.
    DevboxRevoke {
        name: String,
        env_var: Option<String>,
    },
    /// `devbox rotate`.
    DevboxRotate { name: String, env_var: String },
    /// `devbox delete`.
    DevboxDelete { name: String },
    /// `devbox env`.
    DevboxEnv { name: String },
    /// `secret create` (the value travels only over the local socket).
    SecretCreate {
        name: String,
        value: String,
        replace: bool,
    },
    /// `secret delete`.
    SecretDelete { name: String, force: bool },
    /// `mcp-config create`.
    McpConfigCreate {
        name: String,
        endpoint: String,
        allowed_tools: Vec<String>,
        description: Option<String>,
        credential: Option<(String, String)>,
    },
    /// `mcp-config update`.
    McpConfigUpdate {
        name: String,
        allowed_tools: Option<Vec<String>>,
        description: Option<String>,
        endpoint: Option<String>,
    },
    /// `mcp-config delete`.
    McpConfigDelete { name: String, force: bool },
    /// `network-policy create`.
    NetworkPolicyCreate {
        name: String,
        fields: edit::PolicyFields,
    },
    /// `network-policy update`.
    NetworkPolicyUpdate {
        name: String,
        fields: edit::PolicyFields,
    },
    /// `network-policy delete`.
    NetworkPolicyDelete { name: String, force: bool },
    /// `status`: what the running service serves (answered from its live state).
    Status,
}

/// How a request ended, for the CLI's exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Ok,
    /// The result would be an invalid configuration (exit 78).
    Invalid,
    /// Unknown object, conflict or I/O (exit 1).
    Failed,
}

/// The answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    /// Outcome.
    pub outcome: Outcome,
    /// What happened, for people.
    pub message: String,
    /// Environment lines (`RL_MCP_URL`, tokens) where the operation produces them.
    pub env: Vec<(String, String)>,
    /// Every configuration problem, when `outcome` is `Invalid`.
    pub issues: Vec<crate::config::ConfigIssue>,
}

impl Reply {
    fn ok(message: impl Into<String>, env: Vec<(String, String)>) -> Self {
        Self {
            outcome: Outcome::Ok,
            message: message.into(),
            env,
            issues: Vec::new(),
        }
    }
}

impl From<ManageError> for Reply {
    fn from(e: ManageError) -> Self {
        match &e {
            ManageError::Invalid(c) => Self {
                outcome: Outcome::Invalid,
                message: e.to_string(),
                env: Vec::new(),
                issues: c.issues().to_vec(),
            },
            _ => Self {
                outcome: Outcome::Failed,
                message: e.to_string(),
                env: Vec::new(),
                issues: Vec::new(),
            },
        }
    }
}

fn specs(v: &[String]) -> Result<Vec<BindingSpec>, ManageError> {
    v.iter()
        .map(|s| {
            s.parse::<BindingSpec>()
                .map_err(|m| ManageError::Conflict(format!("{s:?}: {m}")))
        })
        .collect()
}

/// Apply a request to the files (under the edit lock). The one implementation behind CLI and socket.
pub fn apply(config_file: &Path, req: Request) -> Reply {
    match apply_inner(config_file, req) {
        Ok(r) => r,
        Err(e) => e.into(),
    }
}

fn apply_inner(config_file: &Path, req: Request) -> Result<Reply, ManageError> {
    let mut ws = Workspace::load(config_file)?;
    let _lock = edit::lock(ws.paths())?;
    let env_of = |ws: &Workspace, name: &str| edit::devbox_env(ws, name);
    Ok(match req {
        Request::DevboxCreate {
            name,
            addresses,
            network_policy,
            mcp,
        } => {
            edit::devbox_create(&mut ws, &name, addresses, network_policy, specs(&mcp)?)?;
            Reply::ok(format!("created devbox {name}"), env_of(&ws, &name)?)
        }
        Request::DevboxBind { name, mcp } => {
            edit::devbox_bind(&mut ws, &name, specs(&mcp)?)?;
            Reply::ok(format!("bound to devbox {name}"), env_of(&ws, &name)?)
        }
        Request::DevboxUnbind { name, env_var } => {
            edit::devbox_unbind(&mut ws, &name, &env_var)?;
            Reply::ok(format!("removed {name}/{env_var}"), Vec::new())
        }
        Request::DevboxSetPolicy { name, policy } => {
            edit::devbox_set_policy(&mut ws, &name, policy.clone())?;
            Reply::ok(
                format!(
                    "devbox {name}: network policy {}",
                    policy.as_deref().unwrap_or("(none: no network)")
                ),
                Vec::new(),
            )
        }
        Request::DevboxRevoke { name, env_var } => {
            let r = edit::devbox_revoke(&mut ws, &name, env_var.as_deref())?;
            Reply::ok(
                format!("revoked {} token(s) of {name}: {}", r.len(), r.join(", ")),
                Vec::new(),
            )
        }
        Request::DevboxRotate { name, env_var } => {
            edit::devbox_rotate(&mut ws, &name, &env_var)?;
            let env = env_of(&ws, &name)?
                .into_iter()
                .filter(|(k, _)| *k == env_var)
                .collect();
            Reply::ok(format!("rotated {name}/{env_var}"), env)
        }
        Request::DevboxDelete { name } => {
            edit::devbox_delete(&mut ws, &name)?;
            Reply::ok(format!("deleted devbox {name}"), Vec::new())
        }
        Request::DevboxEnv { name } => Reply::ok(String::new(), env_of(&ws, &name)?),
        Request::SecretCreate {
            name,
            value,
            replace,
        } => {
            edit::secret_create(&mut ws, &name, SecretString::from(value), replace)?;
            Reply::ok(format!("stored secret {name}"), Vec::new())
        }
        Request::SecretDelete { name, force } => {
            edit::secret_delete(&mut ws, &name, force)?;
            Reply::ok(format!("deleted secret {name}"), Vec::new())
        }
        Request::McpConfigCreate {
            name,
            endpoint,
            allowed_tools,
            description,
            credential,
        } => {
            let id = edit::mcp_config_create(
                &mut ws,
                NewMcpConfig {
                    name: name.clone(),
                    endpoint,
                    allowed_tools,
                    description,
                    credential,
                },
            )?;
            Reply::ok(format!("created mcp_config {name} ({id})"), Vec::new())
        }
        Request::McpConfigUpdate {
            name,
            allowed_tools,
            description,
            endpoint,
        } => {
            edit::mcp_config_update(&mut ws, &name, allowed_tools, description, endpoint)?;
            Reply::ok(format!("updated mcp_config {name}"), Vec::new())
        }
        Request::McpConfigDelete { name, force } => {
            edit::mcp_config_delete(&mut ws, &name, force)?;
            Reply::ok(format!("deleted mcp_config {name}"), Vec::new())
        }
        Request::NetworkPolicyCreate { name, fields } => {
            edit::network_policy_create(&mut ws, &name, fields)?;
            Reply::ok(format!("created network policy {name}"), Vec::new())
        }
        Request::NetworkPolicyUpdate { name, fields } => {
            edit::network_policy_update(&mut ws, &name, fields)?;
            Reply::ok(format!("updated network policy {name}"), Vec::new())
        }
        Request::NetworkPolicyDelete { name, force } => {
            edit::network_policy_delete(&mut ws, &name, force)?;
            Reply::ok(format!("deleted network policy {name}"), Vec::new())
        }
        Request::Status => {
            let s = Snapshot::load(config_file)?;
            Reply::ok(
                format!(
                    "service: not running (no admin socket answered)\n{}",
                    summary(&s)
                ),
                Vec::new(),
            )
        }
    })
}

/// One-paragraph summary of a snapshot, for `status`.
pub fn summary(s: &Snapshot) -> String {
    format!(
        "mcp_configs: {}\nnetwork_policies: {}\ndevboxes: {}\nlive tokens: {}\ngateway: {} on {}",
        s.config.mcp_configs.len(),
        s.config.network_policies.len(),
        s.devboxes.list.len(),
        s.live_bindings(),
        s.config.gateway.url,
        s.config.gateway.listen
    )
}

/// Bind the socket (replacing a stale one nobody listens on) with mode 0660.
///
/// # Errors
/// If another process serves it, or on I/O errors.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{} is served by another process", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)?;
    // SECURITY: owner and group only; the service's group is who may administer it.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Serve requests: apply, reload at once, answer.
pub async fn serve(listener: UnixListener, config_file: PathBuf, state: Arc<Live>) {
    loop {
        let (s, _) = crate::listen::accept_retrying(|| listener.accept()).await;
        let (config_file, state) = (config_file.clone(), state.clone());
        tokio::spawn(async move {
            let (r, mut w) = s.into_split();
            let mut line = String::new();
            let mut r = tokio::io::BufReader::new(r).take(MAX_REQUEST as u64);
            if r.read_line(&mut line).await.is_err() {
                return;
            }
            let reply = match serde_json::from_str::<Request>(&line) {
                Err(e) => Reply {
                    outcome: Outcome::Failed,
                    message: format!("bad request: {e}"),
                    env: Vec::new(),
                    issues: Vec::new(),
                },
                Ok(Request::Status) => {
                    let snap = state.load();
                    Reply::ok(
                        format!(
                            "service: running, mcp-hub {}\n{}",
                            env!("CARGO_PKG_VERSION"),
                            summary(&snap)
                        ),
                        Vec::new(),
                    )
                }
                Ok(req) => {
                    let cf = config_file.clone();
                    let reply = tokio::task::spawn_blocking(move || apply(&cf, req))
                        .await
                        .unwrap_or_else(|_| Reply {
                            outcome: Outcome::Failed,
                            message: "internal error".into(),
                            env: Vec::new(),
                            issues: Vec::new(),
                        });
                    if reply.outcome == Outcome::Ok {
                        if let Err(e) = crate::ops::reload::reload_now(&config_file, &state) {
                            crate::ops::reload::log_failure(&e);
                        }
                    }
                    reply
                }
            };
            tracing::info!(target: crate::telemetry::audit::TARGET, event = "admin", outcome = ?reply.outcome, message = %reply.message, "admin request");
            let mut out = serde_json::to_vec(&reply).unwrap_or_default();
            out.push(b'\n');
            let _ = w.write_all(&out).await;
        });
    }
}

/// Send a request to a running service. `None` when no service is listening there.
pub fn call(path: &Path, req: &Request) -> Option<std::io::Result<Reply>> {
    let mut s = std::os::unix::net::UnixStream::connect(path).ok()?;
    let result = (|| {
        let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
        line.push(b'\n');
        s.write_all(&line)?;
        let mut resp = String::new();
        BufReader::new(&s).read_line(&mut resp)?;
        serde_json::from_str(&resp).map_err(std::io::Error::other)
    })();
    Some(result)
}
