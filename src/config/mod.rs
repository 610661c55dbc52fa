//! Configuration: the operator's `hub.toml`, validated strictly into domain types.
//!
//! `load` is the one code path used by start-up, reload and `mcp-hub check`. It reports every problem at
//! once, each with its file, key path, the bad value and how to fix it (`ConfigIssue`).

pub mod agent;
pub mod origin;
pub(crate) mod raw;
pub mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Uri};
use serde::de::DeserializeOwned;

use crate::policy::tools::ToolFilter;
use validate::Issues;

/// One problem in a configuration or state file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConfigIssue {
    /// The file the problem is in.
    pub file: String,
    /// Key path, e.g. `mcp_configs[2].allowed_tools[0]`.
    pub path: String,
    /// What is wrong and how to fix it. Never contains a secret value.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {}: {}", self.file, self.path, self.message)
        }
    }
}

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// One or more validation problems (all of them).
    #[error("invalid configuration ({} problem{})", .0.len(), if .0.len() == 1 { "" } else { "s" })]
    Invalid(Vec<ConfigIssue>),
}

impl ConfigError {
    /// The individual problems.
    pub fn issues(&self) -> &[ConfigIssue] {
        match self {
            Self::Invalid(v) => v,
        }
    }
}

/// Where everything lives on disk.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The operator's `hub.toml`.
    pub config_file: PathBuf,
    /// Directory for devboxes, tokens, keys and the CA (0700).
    pub state_dir: PathBuf,
    /// Secret values (0600).
    pub secrets_file: PathBuf,
    /// Devboxes and their MCP bindings.
    pub devboxes_file: PathBuf,
    /// Issued token ids per binding.
    pub tokens_file: PathBuf,
    /// Key tokens and session ids are derived from (0600, never leaves the host).
    pub token_key_file: PathBuf,
    /// The hub's CA (`ca.pem`, `ca.key`).
    pub ca_dir: PathBuf,
    /// The operator's tool approvals (`tool-approvals.json`).
    pub tool_approvals_file: PathBuf,
    /// The tool definitions the hub has seen (`tools-seen.json`, written by the hub).
    pub tools_seen_file: PathBuf,
}

/// `[gateway]` after validation.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// Socket the HTTPS endpoint binds.
    pub listen: SocketAddr,
    /// `RL_MCP_URL` as devboxes see it.
    pub url: Uri,
    /// Host part of `url` (certificate name), lowercase, without brackets.
    pub host: String,
    /// Path part of `url`; requests to other paths get 404 after authentication.
    pub path: String,
    /// Browser origins allowed to call the gateway (normally none: agents send no `Origin`).
    pub allowed_origins: Vec<String>,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Largest JSON (non-streaming) upstream response the hub will filter.
    pub max_response_bytes: usize,
    /// How long a client may take to send headers and body.
    pub client_timeout: Duration,
    /// Upstream TCP+TLS connect timeout.
    pub upstream_connect_timeout: Duration,
    /// Time until the upstream's response headers.
    pub upstream_response_timeout: Duration,
    /// Concurrent client connections.
    pub max_connections: usize,
    /// Extra CA bundle trusted for upstream TLS (besides the system store).
    pub upstream_ca_file: Option<PathBuf>,
}

/// Where the bound secret is placed on upstream requests.
#[derive(Debug, Clone)]
pub struct CredentialPlacement {
    /// Header name, `authorization` by default.
    pub header: HeaderName,
    /// Value with `{secret}` in it, `Bearer {secret}` by default.
    pub template: String,
}

impl Default for CredentialPlacement {
    fn default() -> Self {
        Self {
            header: http::header::AUTHORIZATION,
            template: format!("Bearer {}", validate::SECRET_PLACEHOLDER),
        }
    }
}

/// One upstream MCP server as the operator defined it.
#[derive(Debug)]
pub struct McpConfig {
    /// Stable id (`mcp_…`).
    pub id: String,
    /// Unique name, used in bindings, logs and errors.
    pub name: String,
    /// The upstream MCP endpoint.
    pub endpoint: Uri,
    /// Where its connections go (the upstream pool's key and `Host`).
    pub origin: Arc<crate::config::origin::Origin>,
    /// Which tools a devbox may see and call.
    pub allowed_tools: ToolFilter,
    /// Free text for operators.
    pub description: String,
    /// When it was created.
    pub create_time_ms: u64,
    /// Where the secret goes.
    pub credential: CredentialPlacement,
    /// Tools are listed and callable only in a definition the operator approved.
    pub pin_tools: bool,
}

/// `[egress]` after validation. Without it the egress listeners are off.
#[derive(Debug, Clone, Default)]
pub struct EgressSettings {
    /// Listener for connections redirected by nftables.
    pub transparent_listen: Option<SocketAddr>,
    /// Listener for clients that honour `HTTPS_PROXY`/`HTTP_PROXY`.
    pub explicit_listen: Option<SocketAddr>,
    /// DNS responder for devboxes.
    pub dns_listen: Option<SocketAddr>,
    /// Host-side interfaces devbox traffic arrives on (for `mcp-hub firewall`).
    pub devbox_interfaces: Vec<String>,
    /// Addresses the DNS responder gives for the gateway host (the hub as devboxes reach it).
    pub gateway_addresses: Vec<std::net::IpAddr>,
    /// Non-public destination ranges the operator allows.
    pub allowed_private_ranges: Vec<ipnet::IpNet>,
    /// Services on the hub host itself devboxes may reach: address and port (`None`: every port).
    /// Every other port on every host address is refused (`host_address`).
    pub allowed_host_services: Vec<(std::net::IpAddr, Option<u16>)>,
    /// Nameservers the hub resolves destinations with; empty: the host's `/etc/resolv.conf`.
    pub resolvers: Vec<SocketAddr>,
    /// Upstream TCP connect timeout.
    pub connect_timeout: Duration,
    /// Idle timeout of established tunnels (no data either way).
    pub idle_timeout: Duration,
    /// Time to receive a whole TLS ClientHello or HTTP request head.
    pub client_hello_timeout: Duration,
}

/// The validated `hub.toml`.
#[derive(Debug)]
pub struct Config {
    /// File locations.
    pub paths: Paths,
    /// Gateway endpoint settings.
    pub gateway: GatewaySettings,
    /// Upstream MCP servers.
    pub mcp_configs: Vec<Arc<McpConfig>>,
    /// `[agent_gateway]`; `None`: there is no agent gateway.
    pub agent_gateway: Option<agent::AgentGatewaySettings>,
    /// REST APIs behind the agent gateway: the system configs first, then `[[gateway_configs]]`.
    pub gateway_configs: Vec<Arc<agent::GatewayConfig>>,
    /// Egress proxy settings.
    pub egress: EgressSettings,
    /// Network policies devboxes name.
    pub network_policies: Vec<Arc<crate::policy::NetworkPolicy>>,
    /// `[admin] listen`: loopback address for /healthz, /readyz, /metrics.
    pub admin_listen: Option<SocketAddr>,
    /// `[admin] socket`: the Unix socket the CLI sends its edits to while the service runs.
    pub admin_socket: Option<PathBuf>,
}

impl Config {
    /// Find a network policy by name.
    pub fn network_policy(&self, name: &str) -> Option<&Arc<crate::policy::NetworkPolicy>> {
        self.network_policies.iter().find(|p| p.name == name)
    }

    /// The hosts the hub serves TLS for: the MCP gateway's, then the agent gateway's. The certificate
    /// names them and the CA is constrained to them.
    pub fn hub_hosts(&self) -> Vec<&str> {
        let mut h = vec![self.gateway.host.as_str()];
        if let Some(a) = self
            .agent_gateway
            .as_ref()
            .filter(|a| a.host != self.gateway.host)
        {
            h.push(a.host.as_str());
        }
        h
    }

    /// Find a gateway config by name or id.
    pub fn gateway_config(&self, name_or_id: &str) -> Option<&Arc<agent::GatewayConfig>> {
        self.gateway_configs
            .iter()
            .find(|c| c.name == name_or_id || c.id == name_or_id)
    }

    /// Find a config by name or id.
    pub fn mcp_config(&self, name_or_id: &str) -> Option<&Arc<McpConfig>> {
        self.mcp_configs
            .iter()
            .find(|c| c.name == name_or_id || c.id == name_or_id)
    }
}

fn file_label(p: &Path) -> String {
    p.display().to_string()
}

/// Parse TOML text into a table, reporting syntax errors without echoing file contents.
pub(crate) fn parse_table(text: &str, issues: &mut Issues<'_>) -> Option<toml::Table> {
    match text.parse::<toml::Table>() {
        Ok(t) => Some(t),
        Err(e) => {
            // SECURITY: only the message and position, never the source snippet (it may hold a secret).
            let pos = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}")
                })
                .unwrap_or_default();
            issues.push(pos, format!("TOML syntax error: {}", e.message()));
            None
        }
    }
}

/// Deserialize one optional table-valued key.
pub(crate) fn section<T: DeserializeOwned>(
    table: &toml::Table,
    key: &str,
    issues: &mut Issues<'_>,
) -> Option<T> {
    let v = table.get(key)?;
    match v.clone().try_into::<T>() {
        Ok(t) => Some(t),
        Err(e) => {
            issues.push(key, e.message().to_string());
            None
        }
    }
}

/// Deserialize each element of an array-of-tables key separately, so every bad element is reported.
pub(crate) fn array_section<T: DeserializeOwned>(
    table: &toml::Table,
    key: &str,
    issues: &mut Issues<'_>,
) -> Vec<(usize, T)> {
    let Some(v) = table.get(key) else {
        return Vec::new();
    };
    let Some(arr) = v.as_array() else {
        issues.push(key, format!("must be an array of tables ([[{key}]])"));
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in arr.iter().enumerate() {
        match item.clone().try_into::<T>() {
            Ok(t) => out.push((i, t)),
            Err(e) => issues.push(format!("{key}[{i}]"), e.message().to_string()),
        }
    }
    out
}

/// Parse and validate `hub.toml` text. `config_file` anchors relative paths.
///
/// # Errors
/// Every problem found, in file order.
pub fn parse(text: &str, config_file: &Path) -> Result<Config, ConfigError> {
    let label = file_label(config_file);
    let mut issues = Issues::new(&label);
    let cfg =
        parse_table(text, &mut issues).and_then(|t| validate::config(t, config_file, &mut issues));
    match cfg {
        Some(c) if issues.list.is_empty() => Ok(c),
        _ => Err(ConfigError::Invalid(issues.list)),
    }
}

/// Read and validate `hub.toml`.
///
/// # Errors
/// Unreadable file or any validation problem.
pub fn load(config_file: &Path) -> Result<Config, ConfigError> {
    parse(&read(config_file)?, config_file)
}

/// The text of `hub.toml`; a missing file says how to make one.
///
/// # Errors
/// The file cannot be read.
pub fn read(config_file: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(config_file).map_err(|e| {
        let message = if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "does not exist; `mcp-hub --config {} init` writes a minimal one",
                config_file.display()
            )
        } else {
            format!("cannot read: {e}")
        };
        ConfigError::Invalid(vec![ConfigIssue {
            file: file_label(config_file),
            path: String::new(),
            message,
        }])
    })
}

#[cfg(test)]
mod tests;
