//! The admin Unix socket: the CLI's edits, applied by the running service.
//!
//! One code path for every mutating operation: the CLI builds a `Request`; when the service's socket
//! is there it sends it (one JSON line each way) and the service applies it with `apply` and reloads
//! synchronously, so a created token works the moment the command returns; otherwise the CLI calls
//! `apply` itself on the files. The socket is mode 0660 in the service's runtime directory, so the
//! service's group is who may administer it, without read access to the key or secrets files.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

use crate::ops::edit::{
    self, Done, ManageError, Workspace, devbox, gateway_config, mcp_config, network_policy, secret,
    tools,
};
use crate::runtime::{Live, Snapshot};

/// Largest request line accepted on the socket.
const MAX_REQUEST: usize = 1 << 20;

/// A mutating operation (and `devbox env`, which needs the key only the service can read). Each payload
/// is the operation's own argument struct, the one the CLI parses and the edit applies.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(
    tag = "op",
    content = "args",
    rename_all = "snake_case",
    deny_unknown_fields
)]
pub enum Request {
    /// `devbox create`.
    DevboxCreate(devbox::Create),
    /// `devbox bind`.
    DevboxBind(devbox::Bind),
    /// `devbox unbind`.
    DevboxUnbind(devbox::Binding),
    /// `devbox set-policy`.
    DevboxSetPolicy(devbox::SetPolicy),
    /// `devbox revoke`.
    DevboxRevoke(devbox::Revoke),
    /// `devbox rotate`.
    DevboxRotate(devbox::Binding),
    /// `devbox limit`.
    DevboxLimit(devbox::Limit),
    /// `devbox delete`.
    DevboxDelete(devbox::Named),
    /// `devbox env`.
    DevboxEnv(devbox::Named),
    /// `secret create` (the value travels only over the local socket).
    SecretCreate(secret::Create),
    /// `secret delete`.
    SecretDelete(edit::Delete),
    /// `mcp-config create`.
    McpConfigCreate(mcp_config::Create),
    /// `mcp-config update`.
    McpConfigUpdate(mcp_config::Update),
    /// `mcp-config delete`.
    McpConfigDelete(edit::Delete),
    /// `gateway-config create`.
    GatewayConfigCreate(gateway_config::Create),
    /// `gateway-config update`.
    GatewayConfigUpdate(gateway_config::Update),
    /// `gateway-config delete`.
    GatewayConfigDelete(edit::Delete),
    /// `network-policy create`.
    NetworkPolicyCreate(network_policy::Create),
    /// `network-policy update`.
    NetworkPolicyUpdate(network_policy::Update),
    /// `network-policy delete`.
    NetworkPolicyDelete(edit::Delete),
    /// `tools list` (answered from the running service's memory, else the files).
    ToolsList(tools::List),
    /// `tools approve`.
    ToolsApprove(tools::Names),
    /// `tools revoke`.
    ToolsRevoke(tools::Names),
    /// `tools refresh` (the running service lists the upstream itself).
    ToolsRefresh(tools::Refresh),
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
    /// A malformed argument (exit 64).
    BadInput,
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
    /// Structured output where the operation has some (`tools list`).
    #[serde(default)]
    pub data: Option<serde_json::Value>,
}

impl From<Done> for Reply {
    fn from(d: Done) -> Self {
        Self {
            outcome: Outcome::Ok,
            message: d.message,
            env: d.env,
            issues: Vec::new(),
            data: None,
        }
    }
}

impl From<ManageError> for Reply {
    fn from(e: ManageError) -> Self {
        let (outcome, issues) = match &e {
            ManageError::Invalid(c) => (Outcome::Invalid, c.issues().to_vec()),
            ManageError::BadInput(_) => (Outcome::BadInput, Vec::new()),
            _ => (Outcome::Failed, Vec::new()),
        };
        Self {
            outcome,
            message: e.to_string(),
            env: Vec::new(),
            issues,
            data: None,
        }
    }
}

/// Apply a request to the files (under the edit lock). The one implementation behind CLI and socket.
pub fn apply(config_file: &Path, req: Request) -> Reply {
    match apply_inner(config_file, req) {
        Ok(r) => r.into(),
        Err(e) => e.into(),
    }
}

fn apply_inner(config_file: &Path, req: Request) -> Result<Done, ManageError> {
    let mut ws = Workspace::load(config_file)?;
    let _lock = edit::lock(ws.paths())?;
    let ws = &mut ws;
    match req {
        Request::DevboxCreate(a) => a.apply(ws),
        Request::DevboxBind(a) => a.apply(ws),
        Request::DevboxUnbind(a) => a.unbind(ws),
        Request::DevboxSetPolicy(a) => a.apply(ws),
        Request::DevboxRevoke(a) => a.apply(ws),
        Request::DevboxRotate(a) => a.rotate(ws),
        Request::DevboxLimit(a) => a.apply(ws),
        Request::DevboxDelete(a) => a.delete(ws),
        Request::DevboxEnv(a) => a.env(ws),
        Request::SecretCreate(a) => a.apply(ws),
        Request::SecretDelete(a) => secret::delete(a, ws),
        Request::McpConfigCreate(a) => a.apply(ws),
        Request::McpConfigUpdate(a) => a.apply(ws),
        Request::McpConfigDelete(a) => mcp_config::delete(a, ws),
        Request::GatewayConfigCreate(a) => a.apply(ws),
        Request::GatewayConfigUpdate(a) => a.apply(ws),
        Request::GatewayConfigDelete(a) => gateway_config::delete(a, ws),
        Request::NetworkPolicyCreate(a) => a.apply(ws),
        Request::NetworkPolicyUpdate(a) => a.apply(ws),
        Request::NetworkPolicyDelete(a) => network_policy::delete(a, ws),
        Request::ToolsApprove(a) => a.approve(ws),
        Request::ToolsRevoke(a) => a.revoke(ws),
        // Answered without the edit path (see `tools_list` and `tools_refresh`).
        Request::ToolsList(_) | Request::ToolsRefresh(_) => Err(ManageError::BadInput(
            "internal: tools list and refresh are not edits".into(),
        )),
        Request::Status => {
            let s = Snapshot::load(config_file)?;
            Ok(Done::said(format!(
                "service: not running (no admin socket answered)\n{}",
                summary(&s)
            )))
        }
    }
}

/// `tools list` from `approvals` and `seen`, with the rows as data.
pub fn tools_list(
    a: &tools::List,
    config: &crate::config::Config,
    approvals: &crate::state::tools::Approvals,
    seen: &crate::state::tools::Seen,
) -> Reply {
    match a.rows(config, approvals, seen) {
        Ok((rows, text)) => Reply {
            data: serde_json::to_value(rows).ok(),
            ..Done::said(text).into()
        },
        Err(e) => e.into(),
    }
}

/// `tools refresh` into `pins`; when `live` is the running hub's, clients hear of a changed set.
pub async fn tools_refresh(
    a: &tools::Refresh,
    config_file: &Path,
    pins: &crate::runtime::pins::Pins,
    live: Option<&Live>,
) -> Reply {
    match tools::refresh(a, config_file, pins).await {
        Ok((done, moved)) => {
            if moved {
                if let Some(l) = live {
                    l.touch();
                }
            }
            done.into()
        }
        Err(e) => e.into(),
    }
}

/// One-paragraph summary of a snapshot, for `status`.
pub fn summary(s: &Snapshot) -> String {
    format!(
        "mcp_configs: {}\ngateway_configs: {}\nnetwork_policies: {}\ndevboxes: {}\nlive tokens: {}\ngateway: {} on {}\nagent gateway: {}",
        s.config.mcp_configs.len(),
        s.config.gateway_configs.len(),
        s.config.network_policies.len(),
        s.devboxes.list.len(),
        s.live_bindings(),
        s.config.gateway.url,
        s.config.gateway.listen,
        s.config
            .agent_gateway
            .as_ref()
            .map_or("(none: no [agent_gateway])".to_string(), |a| a
                .url
                .to_string()),
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
                Err(e) => ManageError::BadInput(format!("bad request: {e}")).into(),
                Ok(Request::Status) => {
                    let snap = state.load();
                    Done::said(format!(
                        "service: running, mcp-hub {}\n{}",
                        env!("CARGO_PKG_VERSION"),
                        summary(&snap)
                    ))
                    .into()
                }
                Ok(Request::ToolsList(a)) => {
                    let (approvals, seen) = state.pins.current();
                    tools_list(&a, &state.load().config, &approvals, &seen)
                }
                Ok(Request::ToolsRefresh(a)) => {
                    tools_refresh(&a, &config_file, &state.pins, Some(&state)).await
                }
                Ok(req) => {
                    if matches!(req, Request::ToolsApprove(_)) {
                        // Approve reads the observations from the file: write what is in memory first.
                        state.pins.flush_logged();
                    }
                    let cf = config_file.clone();
                    let reply = tokio::task::spawn_blocking(move || apply(&cf, req))
                        .await
                        .unwrap_or_else(|_| Reply {
                            outcome: Outcome::Failed,
                            message: "internal error".into(),
                            env: Vec::new(),
                            issues: Vec::new(),
                            data: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_cli_arguments_as_they_are() {
        let req = Request::DevboxBind(devbox::Bind {
            name: "box".into(),
            mcp: vec!["G=github:TOKEN".parse().unwrap()],
            gateway: vec!["A=anthropic:KEY".parse().unwrap()],
        });
        let line = serde_json::to_value(&req).unwrap();
        assert_eq!(
            line,
            serde_json::json!({"op": "devbox_bind", "args": {"name": "box",
                "mcp": [{"env_var": "G", "mcp_config": "github", "secret": "TOKEN"}],
                "gateway": [{"env_var": "A", "gateway_config": "anthropic", "secret": "KEY"}]}})
        );
        // Strict both ways: an unknown field is an error, not ignored.
        let typo = r#"{"op":"devbox_delete","args":{"name":"box","forse":true}}"#;
        assert!(serde_json::from_str::<Request>(typo).is_err());
        // A secret value never shows in Debug (the socket logs requests' outcomes, not requests).
        let s = Request::SecretCreate(secret::Create {
            name: "S".into(),
            replace: false,
            value: secret::Value("hunter2".into()),
        });
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
