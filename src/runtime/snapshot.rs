//! The runtime view: `hub.toml` + secrets + devboxes + issued tokens, joined into one immutable value
//! that is swapped atomically on reload. Request handling only ever reads a `Snapshot`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use http::HeaderValue;

use crate::config::{self, Config, ConfigError, ConfigIssue, McpConfig};
use crate::runtime::credentials::{Redactor, render};
use crate::state::devboxes::Devboxes;
use crate::state::load_token_key;
use crate::state::secrets::Secrets;
use crate::state::token::{self, TokenId, TokenKey, TokenMac};
use crate::state::tokens::Tokens;
use crate::state::tools::Approvals;
use crate::telemetry::metrics::ConfigMetrics;

/// A (devbox, env var) binding with everything needed to serve it.
pub struct Binding {
    /// Devbox name.
    pub devbox: Arc<str>,
    /// Env var the devbox holds the token in, e.g. `GITHUB_MCP_SECRET`.
    pub env_var: Arc<str>,
    /// Source addresses the token is accepted from (empty: any).
    pub addresses: Arc<[IpAddr]>,
    /// The upstream.
    pub config: Arc<McpConfig>,
    /// Name of the bound secret (never its value).
    pub secret_name: String,
    /// Rendered credential header value (sensitive).
    pub credential: HeaderValue,
    /// Scrubs the secret from upstream responses.
    pub redactor: Redactor,
    /// Id of the current token.
    pub token_id: TokenId,
    /// The config's metric handles (shared by its bindings).
    pub metrics: Arc<ConfigMetrics>,
    mac: TokenMac,
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Binding")
            .field("devbox", &self.devbox)
            .field("env_var", &self.env_var)
            .field("config", &self.config.name)
            .field("secret", &self.secret_name)
            .finish_non_exhaustive()
    }
}

/// A (devbox, env var) agent-gateway binding with everything needed to serve it.
pub struct AgentBinding {
    /// Devbox name.
    pub devbox: Arc<str>,
    /// Env var the devbox holds the token in, e.g. `ANTHROPIC` (the URL is in `ANTHROPIC_URL`).
    pub env_var: Arc<str>,
    /// Source addresses the token is accepted from (empty: any).
    pub addresses: Arc<[IpAddr]>,
    /// The upstream API.
    pub config: Arc<crate::config::agent::GatewayConfig>,
    /// Name of the bound secret (never its value).
    pub secret_name: String,
    /// Rendered credential header value (sensitive), for `config.auth`'s header.
    pub credential: HeaderValue,
    /// Scrubs the secret from upstream responses.
    pub redactor: Redactor,
    /// The devbox's network policy as of this snapshot: checked on every request.
    pub policy: Option<Arc<crate::policy::NetworkPolicy>>,
    /// Per-binding limits.
    pub max_requests_per_minute: Option<u32>,
    /// Per-binding limits.
    pub max_tokens_per_day: Option<u64>,
    /// Id of the current token.
    pub token_id: TokenId,
    /// Its metric handles.
    pub metrics: crate::telemetry::metrics::AgentMetrics,
    mac: TokenMac,
}

impl std::fmt::Debug for AgentBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentBinding")
            .field("devbox", &self.devbox)
            .field("env_var", &self.env_var)
            .field("config", &self.config.name)
            .field("secret", &self.secret_name)
            .finish_non_exhaustive()
    }
}

/// What token authentication needs of a binding, whichever gateway it is for.
trait Tokened {
    fn mac(&self) -> &TokenMac;
    fn addresses(&self) -> &[IpAddr];
}

impl Tokened for Binding {
    fn mac(&self) -> &TokenMac {
        &self.mac
    }
    fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }
}

impl Tokened for AgentBinding {
    fn mac(&self) -> &TokenMac {
        &self.mac
    }
    fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }
}

type ById<B> = HashMap<TokenId, Arc<B>, foldhash::fast::RandomState>;

/// Map a presented token of `kind` to its binding in `map`.
///
/// SECURITY: the MAC is compared in constant time; the token must be presented from one of the
/// devbox's addresses when it has any, so an exfiltrated token is useless elsewhere.
fn verify<B: Tokened>(
    map: &ById<B>,
    kind: token::Kind,
    presented: &str,
    peer: IpAddr,
) -> Result<Arc<B>, AuthFailure> {
    let (id, mac) = token::parse(kind, presented).ok_or(AuthFailure::Malformed)?;
    let b = map.get(&id).ok_or(AuthFailure::Unknown)?;
    if !b.mac().verify(&mac) {
        return Err(AuthFailure::Unknown);
    }
    let peer = canonical_ip(peer);
    let addrs = b.addresses();
    if !addrs.is_empty() && !addrs.iter().any(|a| canonical_ip(*a) == peer) {
        return Err(AuthFailure::WrongAddress);
    }
    Ok(b.clone())
}

/// Why a presented token was refused. All map to the same 401 for the client; the reason is for audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` header.
    Missing,
    /// Not shaped like a hub token.
    Malformed,
    /// No binding has this token (never issued, revoked, rotated, or forged).
    Unknown,
    /// Valid token presented from an address the devbox does not own.
    WrongAddress,
    /// Token in the URL query string.
    InQuery,
}

impl AuthFailure {
    /// Stable snake_case reason for audit and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "token_missing",
            Self::Malformed => "token_malformed",
            Self::Unknown => "token_unknown",
            Self::WrongAddress => "token_wrong_address",
            Self::InQuery => "token_in_query",
        }
    }
}

/// A devbox as the egress proxy sees it: identified by source address.
#[derive(Debug)]
pub struct DevboxView {
    /// Devbox name.
    pub name: Arc<str>,
    /// Its network policy; `None` means no network.
    pub policy: Option<Arc<crate::policy::NetworkPolicy>>,
}

/// Everything the hub serves from, immutable once built.
pub struct Snapshot {
    /// Devboxes by source address (egress identity).
    pub devbox_by_addr: HashMap<IpAddr, Arc<DevboxView>>,
    /// Facts the egress policy needs.
    pub policy_env: Arc<crate::policy::Env>,
    /// Validated `hub.toml`.
    pub config: Arc<Config>,
    /// Devboxes as loaded.
    pub devboxes: Devboxes,
    /// Issued tokens as loaded.
    pub tokens: Tokens,
    /// Looked up on every request. The ids are random and only the hub inserts them, so a fast
    /// (randomly seeded) hash is enough; SipHash was a visible share of a call.
    bindings: ById<Binding>,
    /// Agent-gateway bindings by token id.
    agent_bindings: ById<AgentBinding>,
    /// The operator's tool approvals (`tool-approvals.json`).
    pub approvals: Arc<crate::state::tools::Approvals>,
    session_key: [u8; 32],
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("mcp_configs", &self.config.mcp_configs.len())
            .field("devboxes", &self.devboxes.list.len())
            .field("bindings", &self.bindings.len())
            .finish()
    }
}

impl Snapshot {
    /// Read every file and build. The same path serves start-up, reload and `check`.
    ///
    /// # Errors
    /// All problems across all files.
    pub fn load(config_file: &Path) -> Result<Self, ConfigError> {
        let config = config::load(config_file)?;
        let mut issues = Vec::new();
        let secrets = Secrets::load(&config.paths.secrets_file).unwrap_or_else(|e| {
            issues.extend(e);
            Secrets::default()
        });
        let devboxes = Devboxes::load(&config.paths.devboxes_file).unwrap_or_else(|e| {
            issues.extend(e);
            Devboxes::default()
        });
        let tokens = Tokens::load(&config.paths.tokens_file).unwrap_or_else(|e| {
            issues.extend(e);
            Tokens::default()
        });
        let key = load_token_key(&config.paths.token_key_file).unwrap_or_else(|e| {
            issues.push(e);
            None
        });
        let approvals = Approvals::load(&config.paths.tool_approvals_file).unwrap_or_else(|e| {
            issues.extend(e);
            Approvals::default()
        });
        if !issues.is_empty() {
            return Err(ConfigError::Invalid(issues));
        }
        let mut snap = Self::build(config, &secrets, devboxes, tokens, key.as_ref())?;
        snap.approvals = Arc::new(approvals);
        Ok(snap)
    }

    /// Join the parts, checking every cross-reference.
    ///
    /// # Errors
    /// Bindings naming unknown configs or secrets, or secrets unusable in a header.
    pub fn build(
        config: Config,
        secrets: &Secrets,
        devboxes: Devboxes,
        tokens: Tokens,
        key: Option<&TokenKey>,
    ) -> Result<Self, ConfigError> {
        let file = config.paths.devboxes_file.display().to_string();
        let mut issues = Vec::new();
        let mut bindings = HashMap::default();
        let mut agent_bindings = HashMap::default();
        let mut devbox_by_addr = HashMap::new();
        let mut config_metrics: HashMap<String, Arc<ConfigMetrics>> = HashMap::new();
        for (i, d) in devboxes.list.iter().enumerate() {
            let policy = match &d.network_policy {
                None => None,
                Some(n) => match config.network_policy(n) {
                    Some(p) => Some(p.clone()),
                    None => {
                        issues.push(ConfigIssue {
                            file: file.clone(),
                            path: format!("devboxes[{i}].network_policy"),
                            message: format!(
                                "{n:?} is not a [[network_policies]] name in {}",
                                config.paths.config_file.display()
                            ),
                        });
                        None
                    }
                },
            };
            let view = Arc::new(DevboxView {
                name: d.name.as_str().into(),
                policy,
            });
            for a in &d.addresses {
                devbox_by_addr.insert(canonical_ip(*a), view.clone());
            }
            let addresses: Arc<[IpAddr]> = d.addresses.clone().into();
            for (env, b) in &d.mcp {
                let at = format!("devboxes[{i}].mcp.{env}");
                let mut push = |k: &str, m: String| {
                    issues.push(ConfigIssue {
                        file: file.clone(),
                        path: format!("{at}.{k}"),
                        message: m,
                    });
                };
                let Some(cfg) = config.mcp_config(&b.mcp_config) else {
                    push(
                        "mcp_config",
                        format!(
                            "{:?} is not a configured mcp_config; see `mcp-hub mcp-config list`",
                            b.mcp_config
                        ),
                    );
                    continue;
                };
                let (credential, redactor) = match bound_secret(secrets, &b.secret, &cfg.credential)
                {
                    Ok(c) => c,
                    Err(m) => {
                        push("secret", m);
                        continue;
                    }
                };
                let (Some(id), Some(key)) = (tokens.get(&d.name, env), key) else {
                    continue; // no token issued (or revoked): the binding exists but nothing authenticates to it
                };
                bindings.insert(
                    id,
                    Arc::new(Binding {
                        devbox: d.name.as_str().into(),
                        env_var: env.as_str().into(),
                        addresses: addresses.clone(),
                        config: cfg.clone(),
                        secret_name: b.secret.clone(),
                        credential,
                        redactor,
                        token_id: id,
                        metrics: config_metrics
                            .entry(cfg.name.clone())
                            .or_insert_with(|| Arc::new(ConfigMetrics::new(&cfg.name)))
                            .clone(),
                        mac: key.mac(token::Kind::Mcp, &d.name, env, &id),
                    }),
                );
            }
            for (env, b) in &d.gateways {
                let at = format!("devboxes[{i}].gateways.{env}");
                let mut push = |k: &str, m: String| {
                    issues.push(ConfigIssue {
                        file: file.clone(),
                        path: format!("{at}.{k}"),
                        message: m,
                    });
                };
                if config.agent_gateway.is_none() {
                    push(
                        "gateway_config",
                        format!(
                            "binds the agent gateway, but {} has no [agent_gateway] section; add one with its url",
                            config.paths.config_file.display()
                        ),
                    );
                    continue;
                }
                let Some(cfg) = config.gateway_config(&b.gateway_config) else {
                    push(
                        "gateway_config",
                        format!(
                            "{:?} is not a gateway config; see `mcp-hub gateway-config list`",
                            b.gateway_config
                        ),
                    );
                    continue;
                };
                let placement = cfg.auth.placement();
                let (credential, redactor) = match bound_secret(secrets, &b.secret, &placement) {
                    Ok(c) => c,
                    Err(m) => {
                        push("secret", m);
                        continue;
                    }
                };
                let (Some(id), Some(key)) = (tokens.get(&d.name, env), key) else {
                    continue;
                };
                agent_bindings.insert(
                    id,
                    Arc::new(AgentBinding {
                        devbox: d.name.as_str().into(),
                        env_var: env.as_str().into(),
                        addresses: addresses.clone(),
                        config: cfg.clone(),
                        secret_name: b.secret.clone(),
                        credential,
                        redactor,
                        policy: view.policy.clone(),
                        max_requests_per_minute: b.max_requests_per_minute,
                        max_tokens_per_day: b.max_tokens_per_day,
                        token_id: id,
                        metrics: crate::telemetry::metrics::AgentMetrics::new(
                            &cfg.name, &d.name, env,
                        ),
                        mac: key.mac(token::Kind::Agent, &d.name, env, &id),
                    }),
                );
            }
        }
        if !issues.is_empty() {
            return Err(ConfigError::Invalid(issues));
        }
        let session_key = key.map(TokenKey::session_key).unwrap_or_default();
        let policy_env = Arc::new(policy_env(&config, &devbox_by_addr));
        Ok(Self {
            devbox_by_addr,
            policy_env,
            config: Arc::new(config),
            devboxes,
            tokens,
            bindings,
            agent_bindings,
            approvals: Arc::default(),
            session_key,
        })
    }

    /// Map a presented bearer token to its binding.
    ///
    /// SECURITY: the MAC is compared in constant time; the token must be presented from one of the
    /// devbox's addresses when it has any, so an exfiltrated token is useless elsewhere.
    ///
    /// # Errors
    /// Why the token was refused.
    pub fn authenticate(&self, presented: &str, peer: IpAddr) -> Result<Arc<Binding>, AuthFailure> {
        verify(&self.bindings, token::Kind::Mcp, presented, peer)
    }

    /// Map a presented agent-gateway token to its binding, as [`Self::authenticate`] does for MCP.
    ///
    /// # Errors
    /// Why the token was refused.
    pub fn authenticate_agent(
        &self,
        presented: &str,
        peer: IpAddr,
    ) -> Result<Arc<AgentBinding>, AuthFailure> {
        verify(&self.agent_bindings, token::Kind::Agent, presented, peer)
    }

    /// Key for sealing session ids to the token that created them.
    pub fn session_key(&self) -> &[u8; 32] {
        &self.session_key
    }

    /// Whether a token id is still live (not revoked, rotated or deleted).
    pub fn token_live(&self, id: &TokenId) -> bool {
        self.bindings.contains_key(id)
    }

    /// Number of bindings with a live token (MCP and agent gateway).
    pub fn live_bindings(&self) -> usize {
        self.bindings.len() + self.agent_bindings.len()
    }
}

/// Stored secret `name` rendered for `placement` (a sensitive header value), and the redactor that
/// scrubs it from responses; or why it cannot be used, for the binding's `secret` key.
fn bound_secret(
    secrets: &Secrets,
    name: &str,
    placement: &crate::config::CredentialPlacement,
) -> Result<(HeaderValue, Redactor), String> {
    let secret = secrets.map.get(name).ok_or_else(|| {
        format!("{name:?} is not a stored secret; add it with `mcp-hub secret create {name}`")
    })?;
    let credential = render(placement, &secret.value)?;
    let redactor = Redactor::new(&secret.value, &credential);
    Ok((credential, redactor))
}

/// The policy's view of the deployment: gateway host, agent gateway, devbox addresses, and the hub's
/// own addresses and ports for the loop guard (wildcard listeners expand to every local address).
fn policy_env(config: &Config, devboxes: &HashMap<IpAddr, Arc<DevboxView>>) -> crate::policy::Env {
    let e = &config.egress;
    let listens: Vec<std::net::SocketAddr> = [
        Some(config.gateway.listen),
        e.transparent_listen,
        e.explicit_listen,
        e.dns_listen,
    ]
    .into_iter()
    .flatten()
    .collect();
    let local: Vec<IpAddr> = nix::ifaddrs::getifaddrs()
        .map(|it| {
            it.filter_map(|i| i.address)
                .filter_map(|a| {
                    a.as_sockaddr_in()
                        .map(|s| IpAddr::V4(s.ip()))
                        .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut self_addrs = std::collections::HashSet::new();
    for l in &listens {
        if l.ip().is_unspecified() {
            for ip in &local {
                self_addrs.insert(std::net::SocketAddr::new(*ip, l.port()));
            }
        } else {
            self_addrs.insert(std::net::SocketAddr::new(canonical_ip(l.ip()), l.port()));
        }
    }
    crate::policy::Env {
        gateway: crate::policy::host::parse_host(&config.gateway.host)
            .ok()
            .map(|t| (t, config.gateway.url.port_u16().unwrap_or(443))),
        agent_gateway: config.agent_gateway.as_ref().and_then(|a| {
            crate::policy::host::parse_host(&a.host)
                .ok()
                .map(|t| (t, a.port))
        }),
        devbox_addrs: devboxes.keys().copied().collect(),
        allowed_private_ranges: e.allowed_private_ranges.clone(),
        self_addrs,
        self_ports: listens.iter().map(|l| l.port()).collect(),
        host_services: e.allowed_host_services.clone(),
    }
}

pub use crate::policy::ip::canonical_ip;
