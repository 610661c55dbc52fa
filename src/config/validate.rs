//! `raw::*` -> domain types. Collects every problem instead of stopping at the first.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, Uri};
use sha2::{Digest, Sha256};

use super::raw::{RawGateway, RawHub, RawMcpConfig};
use super::{Config, ConfigIssue, CredentialPlacement, GatewaySettings, McpConfig, Paths};
use crate::config::origin::Origin;
use crate::policy::tools::ToolFilter;

/// The configuration format version this build reads.
pub const CONFIG_VERSION: i64 = 1;

/// Placeholder in a credential value template.
pub const SECRET_PLACEHOLDER: &str = "{secret}";

/// Collects issues for one file.
pub(crate) struct Issues<'a> {
    file: &'a str,
    pub(crate) list: Vec<ConfigIssue>,
}

impl<'a> Issues<'a> {
    pub(crate) fn new(file: &'a str) -> Self {
        Self {
            file,
            list: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.list.push(ConfigIssue {
            file: self.file.to_string(),
            path: path.into(),
            message: message.into(),
        });
    }
}

/// A name usable as an MCP config, secret or devbox name: short, printable, shell- and TOML-safe.
pub fn is_valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_valid_env_var(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && s.len() <= 128
}

fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

pub(crate) fn paths(raw: &RawHub, config_file: &Path, issues: &mut Issues<'_>) -> Paths {
    let base = config_file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let state_dir = match &raw.state_dir {
        Some(s) if s.trim().is_empty() => {
            issues.push(
                "hub.state_dir",
                "must not be empty; e.g. \"/var/lib/mcp-hub\"",
            );
            PathBuf::from("/var/lib/mcp-hub")
        }
        Some(s) => resolve_path(&base, s),
        None => PathBuf::from("/var/lib/mcp-hub"),
    };
    let secrets_file = match &raw.secrets_file {
        Some(s) => resolve_path(&base, s),
        None => state_dir.join("secrets.toml"),
    };
    Paths {
        config_file: config_file.to_path_buf(),
        devboxes_file: state_dir.join("devboxes.toml"),
        tokens_file: state_dir.join("tokens.json"),
        token_key_file: state_dir.join("token.key"),
        ca_dir: state_dir.join("ca"),
        tool_approvals_file: state_dir.join("tool-approvals.json"),
        tools_seen_file: state_dir.join("tools-seen.json"),
        state_dir,
        secrets_file,
    }
}

fn ms(
    v: Option<u64>,
    default: u64,
    min: u64,
    max: u64,
    key: &str,
    issues: &mut Issues<'_>,
) -> Duration {
    let v = v.unwrap_or(default);
    if !(min..=max).contains(&v) {
        issues.push(
            format!("gateway.{key}"),
            format!("{v} is out of range; use a value between {min} and {max}"),
        );
        return Duration::from_millis(default);
    }
    Duration::from_millis(v)
}

fn bytes(v: Option<u64>, default: u64, max: u64, key: &str, issues: &mut Issues<'_>) -> usize {
    let v = v.unwrap_or(default);
    if v == 0 || v > max {
        issues.push(
            format!("gateway.{key}"),
            format!("{v} is out of range; use a value between 1 and {max}"),
        );
        return usize::try_from(default).unwrap_or(usize::MAX);
    }
    usize::try_from(v).unwrap_or(usize::MAX)
}

pub(crate) fn gateway(raw: &RawGateway, base: &Path, issues: &mut Issues<'_>) -> GatewaySettings {
    let listen = raw.listen.as_deref().unwrap_or("127.0.0.1:8443");
    let listen: SocketAddr = listen.parse().unwrap_or_else(|_| {
        issues.push(
            "gateway.listen",
            format!("{listen:?} is not an address:port; e.g. \"0.0.0.0:8443\" or \"[::]:8443\""),
        );
        SocketAddr::from(([127, 0, 0, 1], 8443))
    });
    let (url, host, path) = match raw.url.as_deref() {
        None => {
            issues.push(
                "gateway.url",
                "is required: the RL_MCP_URL devboxes use, e.g. \"https://mcp.hub.internal/mcp\"",
            );
            (
                Uri::from_static("https://invalid/mcp"),
                "invalid".to_string(),
                "/mcp".to_string(),
            )
        }
        Some(u) => match gateway_url(u) {
            Ok(v) => v,
            Err(m) => {
                issues.push("gateway.url", format!("{u:?}: {m}"));
                (
                    Uri::from_static("https://invalid/mcp"),
                    "invalid".to_string(),
                    "/mcp".to_string(),
                )
            }
        },
    };
    let mut allowed_origins = Vec::new();
    for (i, o) in raw.allowed_origins.iter().flatten().enumerate() {
        match o.parse::<Uri>() {
            Ok(u) if u.scheme().is_some() && u.host().is_some() && u.path() == "/" => {
                allowed_origins.push(o.trim_end_matches('/').to_ascii_lowercase());
            }
            _ => issues.push(
                format!("gateway.allowed_origins[{i}]"),
                format!("{o:?} is not an origin; use scheme://host[:port], e.g. \"https://app.example.com\""),
            ),
        }
    }
    let upstream_ca_file = raw
        .upstream_ca_file
        .as_deref()
        .map(|p| resolve_path(base, p));
    GatewaySettings {
        listen,
        url,
        host,
        path,
        allowed_origins,
        max_body_bytes: bytes(
            raw.max_body_bytes,
            4 << 20,
            256 << 20,
            "max_body_bytes",
            issues,
        ),
        max_response_bytes: bytes(
            raw.max_response_bytes,
            32 << 20,
            1 << 30,
            "max_response_bytes",
            issues,
        ),
        client_timeout: ms(
            raw.client_timeout_ms,
            30_000,
            100,
            3_600_000,
            "client_timeout_ms",
            issues,
        ),
        upstream_connect_timeout: ms(
            raw.upstream_connect_timeout_ms,
            5_000,
            10,
            600_000,
            "upstream_connect_timeout_ms",
            issues,
        ),
        upstream_response_timeout: ms(
            raw.upstream_response_timeout_ms,
            120_000,
            10,
            3_600_000,
            "upstream_response_timeout_ms",
            issues,
        ),
        max_connections: bytes(
            raw.max_connections,
            10_000,
            1_000_000,
            "max_connections",
            issues,
        ),
        upstream_ca_file,
    }
}

fn gateway_url(u: &str) -> Result<(Uri, String, String), String> {
    let uri: Uri = u.parse().map_err(|_| "not a URL".to_string())?;
    if uri.scheme_str() != Some("https") {
        return Err("must be an https:// URL (the gateway only serves TLS)".into());
    }
    let host = uri.host().ok_or("has no host")?;
    if uri.query().is_some() {
        return Err("must not have a query string".into());
    }
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let path = if uri.path().is_empty() {
        "/".to_string()
    } else {
        uri.path().to_string()
    };
    Ok((uri, host, path))
}

/// A stable id for a hand-written config without one: its kind's prefix (`mcp_`, `gwc_`) + 16 hex
/// chars of SHA-256(name).
pub fn derived_id(prefix: &str, name: &str) -> String {
    let d = Sha256::digest(name.as_bytes());
    let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// Validate an upstream endpoint URL. Also returns its origin (the pool key, host, port and `Host`
/// header value), built here once per config rather than per request.
///
/// # Errors
/// A message saying what is wrong and how to fix it.
pub fn endpoint(s: &str) -> Result<(Uri, Arc<Origin>), String> {
    let uri: Uri = s
        .parse()
        .map_err(|_| "not a URL; e.g. \"https://mcp.example.com/mcp\"".to_string())?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("must be an http:// or https:// URL".into()),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        // SECURITY: credentials belong in the secret store, not in a URL that gets logged.
        return Err("must not contain user:password@; store the credential as a secret".into());
    }
    let origin = Origin::of(&uri).ok_or("has no valid host")?;
    Ok((uri, Arc::new(origin)))
}

/// Validate a credential header name and value template.
///
/// # Errors
/// A message saying what is wrong and how to fix it.
pub fn credential(header: &str, value: &str) -> Result<CredentialPlacement, String> {
    let name: HeaderName = header
        .parse()
        .map_err(|_| format!("header {header:?} is not a valid HTTP header name"))?;
    const RESERVED: &[&str] = &[
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "accept",
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
        "te",
        "upgrade",
    ];
    if RESERVED.contains(&name.as_str()) {
        return Err(format!(
            "header {header:?} is managed by the hub; pick another header"
        ));
    }
    if value.matches(SECRET_PLACEHOLDER).count() != 1 {
        return Err(format!(
            "value template {value:?} must contain {SECRET_PLACEHOLDER} exactly once, e.g. \"Bearer {SECRET_PLACEHOLDER}\""
        ));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err("value template must not contain control characters".into());
    }
    Ok(CredentialPlacement {
        header: name,
        template: value.to_string(),
    })
}

/// The names and ids already used in one array of configs (`[[mcp_configs]]`, `[[gateway_configs]]`).
pub(crate) struct Taken {
    kind: &'static str,
    prefix: &'static str,
    names: HashSet<String>,
    ids: HashSet<String>,
}

impl Taken {
    /// Nothing taken yet in `[[{kind}s]]`, whose ids start with `prefix`.
    pub(crate) fn new(kind: &'static str, prefix: &'static str) -> Self {
        Self {
            kind,
            prefix,
            names: HashSet::new(),
            ids: HashSet::new(),
        }
    }

    /// Count a name and id as taken already (built-in configs).
    pub(crate) fn reserve(&mut self, name: &str, id: &str) {
        self.names.insert(name.to_string());
        self.ids.insert(id.to_string());
    }

    /// Check entry `i`'s name and its id (derived from the name when it gives none), reporting every
    /// problem; `reserved` is why the name may not be used, when it may not. The id, when both are
    /// good.
    pub(crate) fn claim(
        &mut self,
        i: usize,
        name: &str,
        id: Option<&str>,
        reserved: Option<String>,
        issues: &mut Issues<'_>,
    ) -> Option<String> {
        let (kind, prefix) = (self.kind, self.prefix);
        let at = |k: &str| format!("{kind}s[{i}].{k}");
        let mut ok = true;
        if !is_valid_name(name) {
            issues.push(
                at("name"),
                format!("{name:?} must be 1-64 characters of A-Z a-z 0-9 _ - ."),
            );
            ok = false;
        } else if let Some(why) = reserved {
            issues.push(at("name"), why);
            ok = false;
        } else if !self.names.insert(name.to_string()) {
            issues.push(
                at("name"),
                format!("{name:?} is used by another {kind}; names must be unique"),
            );
            ok = false;
        }
        let given = id.is_some();
        let id = id.map_or_else(|| derived_id(prefix, name), str::to_string);
        let id_ok = id.strip_prefix(prefix).is_some_and(|s| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
        if !id_ok {
            issues.push(
                at("id"),
                format!("{id:?} must look like \"{prefix}\" followed by letters and digits"),
            );
            ok = false;
        } else if (given || ok) && !self.ids.insert(id.clone()) {
            // A derived id of an already-reported duplicate name would only repeat that problem.
            issues.push(
                at("id"),
                format!("{id:?} is used by another {kind}; ids must be unique"),
            );
            ok = false;
        }
        ok.then_some(id)
    }
}

pub(crate) fn mcp_configs(
    raws: Vec<(usize, RawMcpConfig)>,
    issues: &mut Issues<'_>,
) -> Vec<Arc<McpConfig>> {
    let mut taken = Taken::new("mcp_config", "mcp_");
    let mut out = Vec::new();
    for (i, r) in raws {
        let at = |k: &str| format!("mcp_configs[{i}].{k}");
        let id = taken.claim(i, &r.name, r.id.as_deref(), None, issues);
        let endpoint = match endpoint(&r.endpoint) {
            Ok(e) => Some(e),
            Err(m) => {
                issues.push(at("endpoint"), format!("{:?}: {m}", r.endpoint));
                None
            }
        };
        let filter = match ToolFilter::new(&r.allowed_tools) {
            Ok(f) => Some(f),
            Err((j, m)) => {
                issues.push(
                    format!("mcp_configs[{i}].allowed_tools[{j}]"),
                    format!(
                        "{:?}: {m}",
                        r.allowed_tools.get(j).map(String::as_str).unwrap_or("")
                    ),
                );
                None
            }
        };
        let credential = match &r.credential {
            None => Some(CredentialPlacement::default()),
            Some(c) => match credential(&c.header, &c.value) {
                Ok(c) => Some(c),
                Err(m) => {
                    issues.push(at("credential"), m);
                    None
                }
            },
        };
        if let (Some(id), Some((endpoint, origin)), Some(allowed_tools), Some(credential)) =
            (id, endpoint, filter, credential)
        {
            out.push(Arc::new(McpConfig {
                id,
                name: r.name,
                endpoint,
                origin,
                allowed_tools,
                description: r.description.unwrap_or_default(),
                create_time_ms: r.create_time_ms.unwrap_or(0),
                credential,
                pin_tools: r.pin_tools,
            }));
        }
    }
    out
}

/// Check `version` first: a file for another format version must not be half-understood.
pub(crate) fn version(v: Option<&toml::Value>, issues: &mut Issues<'_>) -> bool {
    match v {
        Some(toml::Value::Integer(CONFIG_VERSION)) => true,
        Some(other) => {
            issues.push(
                "version",
                format!("{other} is not supported; this build reads version = {CONFIG_VERSION}"),
            );
            false
        }
        None => {
            issues.push(
                "version",
                format!("is required; add `version = {CONFIG_VERSION}` at the top"),
            );
            false
        }
    }
}

/// Assemble a full `Config` from a parsed hub file.
pub(crate) fn config(
    table: toml::Table,
    config_file: &Path,
    issues: &mut Issues<'_>,
) -> Option<Config> {
    if !version(table.get("version"), issues) {
        return None;
    }
    const KNOWN: &[&str] = &[
        "version",
        "hub",
        "gateway",
        "mcp_configs",
        "egress",
        "network_policies",
        "admin",
        "agent_gateway",
        "gateway_configs",
    ];
    for k in table.keys() {
        if !KNOWN.contains(&k.as_str()) {
            issues.push(
                k.clone(),
                format!("unknown key; expected one of {}", KNOWN.join(", ")),
            );
        }
    }
    let hub: RawHub = super::section(&table, "hub", issues).unwrap_or_default();
    let gw: RawGateway = super::section(&table, "gateway", issues).unwrap_or_default();
    let raws = super::array_section::<RawMcpConfig>(&table, "mcp_configs", issues);
    let eg: super::raw::RawEgress = super::section(&table, "egress", issues).unwrap_or_default();
    let np =
        super::array_section::<super::raw::RawNetworkPolicy>(&table, "network_policies", issues);
    let ad: super::raw::RawAdmin = super::section(&table, "admin", issues).unwrap_or_default();
    let ag: Option<super::raw::RawAgentGateway> = super::section(&table, "agent_gateway", issues);
    let gwc =
        super::array_section::<super::raw::RawGatewayConfig>(&table, "gateway_configs", issues);
    let admin_socket = ad
        .socket
        .as_deref()
        .map(|p| resolve_path(config_file.parent().unwrap_or(Path::new(".")), p));
    let admin_listen = match ad.listen.as_deref().map(str::parse::<SocketAddr>) {
        None => None,
        Some(Ok(a)) if a.ip().is_loopback() => Some(a),
        Some(Ok(a)) => {
            issues.push("admin.listen", format!("{a} is not a loopback address; the admin listener must stay on the host, e.g. \"127.0.0.1:9464\""));
            None
        }
        Some(Err(_)) => {
            issues.push(
                "admin.listen",
                "not an address:port, e.g. \"127.0.0.1:9464\"",
            );
            None
        }
    };
    let paths = paths(&hub, config_file, issues);
    let base = config_file.parent().unwrap_or(Path::new("."));
    let gateway = gateway(&gw, base, issues);
    let mcp_configs = mcp_configs(raws, issues);
    let agent_gateway = ag
        .as_ref()
        .and_then(|a| super::agent::agent_gateway(a, &gateway, issues));
    let gateway_configs = super::agent::gateway_configs(gwc, issues);
    let egress = egress(&eg, issues);
    let network_policies = network_policies(np, issues);
    Some(Config {
        paths,
        gateway,
        mcp_configs,
        agent_gateway,
        gateway_configs,
        egress,
        network_policies,
        admin_listen,
        admin_socket,
    })
}

fn socket(v: &Option<String>, key: &str, issues: &mut Issues<'_>) -> Option<SocketAddr> {
    let s = v.as_deref()?;
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            issues.push(
                format!("egress.{key}"),
                format!("{s:?} is not an address:port; e.g. \"0.0.0.0:15001\""),
            );
            None
        }
    }
}

fn host_patterns(
    v: &[String],
    key: &str,
    issues: &mut Issues<'_>,
) -> Vec<crate::policy::host::HostPattern> {
    let mut out = Vec::new();
    for (i, h) in v.iter().enumerate() {
        match crate::policy::host::HostPattern::parse(h) {
            Ok(p) => out.push(p),
            Err(m) => issues.push(format!("{key}[{i}]"), format!("{h:?}: {m}")),
        }
    }
    out
}

/// `ADDRESS:PORT` or `ADDRESS:*` (IPv6 in brackets).
fn host_service(v: &str) -> Option<(std::net::IpAddr, Option<u16>)> {
    let (addr, port) = v.rsplit_once(':')?;
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let ip: std::net::IpAddr = addr.parse().ok()?;
    if ip.is_ipv6() && !v.starts_with('[') {
        return None;
    }
    let port = match port {
        "*" => None,
        p => Some(p.parse::<u16>().ok().filter(|&p| p != 0)?),
    };
    Some((crate::policy::ip::canonical_ip(ip), port))
}

pub(crate) fn egress(
    raw: &super::raw::RawEgress,
    issues: &mut Issues<'_>,
) -> super::EgressSettings {
    let mut gateway_addresses = Vec::new();
    for (i, a) in raw.gateway_addresses.iter().flatten().enumerate() {
        match a.parse() {
            Ok(ip) => gateway_addresses.push(ip),
            Err(_) => issues.push(
                format!("egress.gateway_addresses[{i}]"),
                format!("{a:?} is not an IP address"),
            ),
        }
    }
    let mut allowed_private_ranges = Vec::new();
    for (i, r) in raw.allowed_private_ranges.iter().flatten().enumerate() {
        match r.parse::<ipnet::IpNet>() {
            Ok(n) if n.prefix_len() == 0 => issues.push(
                format!("egress.allowed_private_ranges[{i}]"),
                format!(
                    "{r:?} would allow every address; list the private ranges devboxes may reach"
                ),
            ),
            Ok(n) => allowed_private_ranges.push(n.trunc()),
            Err(_) => issues.push(
                format!("egress.allowed_private_ranges[{i}]"),
                format!("{r:?} is not a CIDR range, e.g. \"10.20.0.0/16\""),
            ),
        }
    }
    let mut allowed_host_services = Vec::new();
    for (i, v) in raw.allowed_host_services.iter().flatten().enumerate() {
        match host_service(v) {
            Some(s) => allowed_host_services.push(s),
            None => issues.push(
                format!("egress.allowed_host_services[{i}]"),
                format!(
                    "{v:?} is not ADDRESS:PORT or ADDRESS:* (e.g. \"10.77.0.1:5432\", \"[fd77::1]:*\")"
                ),
            ),
        }
    }
    let mut resolvers = Vec::new();
    for (i, v) in raw.resolvers.iter().flatten().enumerate() {
        let parsed = v.parse::<SocketAddr>().ok().or_else(|| {
            v.parse::<std::net::IpAddr>()
                .ok()
                .map(|ip| SocketAddr::new(ip, 53))
        });
        match parsed {
            Some(a) => resolvers.push(a),
            None => issues.push(
                format!("egress.resolvers[{i}]"),
                format!(
                    "{v:?} is not ADDRESS or ADDRESS:PORT (e.g. \"10.0.0.2\", \"[fd00::53]:53\")"
                ),
            ),
        }
    }
    if raw.agent_gateway_hosts.is_some() {
        issues.push(
            "egress.agent_gateway_hosts",
            "was removed: `allow_agent_gateway` now means the hub's own agent gateway ([agent_gateway] \
             url), which keeps the provider's key on the host. Delete this key; to let devboxes reach a \
             provider directly with a key of their own, list its host in a policy's allowed_hostnames",
        );
    }
    let mut devbox_interfaces = Vec::new();
    for (i, n) in raw.devbox_interfaces.iter().flatten().enumerate() {
        let ok = !n.is_empty()
            && n.len() < 16
            && n.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+' | b'*')
            });
        if ok {
            devbox_interfaces.push(n.clone());
        } else {
            issues.push(format!("egress.devbox_interfaces[{i}]"), format!("{n:?} is not an interface name (up to 15 of A-Z a-z 0-9 - _ . and a trailing * wildcard)"));
        }
    }
    let ms = |v: Option<u64>, d: u64, key: &str, issues: &mut Issues<'_>| -> Duration {
        let v = v.unwrap_or(d);
        if v == 0 || v > 86_400_000 {
            issues.push(
                format!("egress.{key}"),
                format!("{v} is out of range; use 1..86400000"),
            );
            return Duration::from_millis(d);
        }
        Duration::from_millis(v)
    };
    super::EgressSettings {
        transparent_listen: socket(&raw.transparent_listen, "transparent_listen", issues),
        explicit_listen: socket(&raw.explicit_listen, "explicit_listen", issues),
        dns_listen: socket(&raw.dns_listen, "dns_listen", issues),
        devbox_interfaces,
        gateway_addresses,
        allowed_private_ranges,
        allowed_host_services,
        resolvers,
        connect_timeout: ms(raw.connect_timeout_ms, 5_000, "connect_timeout_ms", issues),
        idle_timeout: ms(raw.idle_timeout_ms, 600_000, "idle_timeout_ms", issues),
        client_hello_timeout: ms(
            raw.client_hello_timeout_ms,
            5_000,
            "client_hello_timeout_ms",
            issues,
        ),
    }
}

pub(crate) fn network_policies(
    raws: Vec<(usize, super::raw::RawNetworkPolicy)>,
    issues: &mut Issues<'_>,
) -> Vec<Arc<crate::policy::NetworkPolicy>> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, r) in raws {
        if !is_valid_name(&r.name) {
            issues.push(
                format!("network_policies[{i}].name"),
                format!("{:?} must be 1-64 characters of A-Z a-z 0-9 _ - .", r.name),
            );
            continue;
        }
        if !names.insert(r.name.clone()) {
            issues.push(
                format!("network_policies[{i}].name"),
                format!("{:?} is used by another network policy", r.name),
            );
            continue;
        }
        let allowed_hostnames = host_patterns(
            &r.allowed_hostnames,
            &format!("network_policies[{i}].allowed_hostnames"),
            issues,
        );
        out.push(Arc::new(crate::policy::NetworkPolicy {
            name: r.name,
            description: r.description.unwrap_or_default(),
            allow_all: r.allow_all,
            allowed_hostnames,
            allow_devbox_to_devbox: r.allow_devbox_to_devbox,
            allow_mcp_gateway: r.allow_mcp_gateway,
            allow_agent_gateway: r.allow_agent_gateway,
        }));
    }
    out
}
