//! Egress policy: a pure function from (devbox policy, destination) to a verdict with a stable reason.
//! No I/O here; the proxy resolves names and hands the addresses back for `admit`.
//!
//! Two steps, because a name is judged before it is resolved and its addresses after:
//! 1. `decide(policy, env, target)`: may this devbox talk to this destination at all?
//! 2. `admit(allowance, env, addrs, port)`: are the resolved addresses acceptable? Only this builds an
//!    `Allowed`, and the dialler accepts nothing else, so an unchecked address cannot be dialled.

pub mod host;
pub mod ip;
pub mod pins;
pub mod tools;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use host::{HostPattern, Target};
use ip::IpClass;

use ip::canonical_ip;

/// A `[[network_policies]]` entry, validated.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Any destination (still never the hub itself, nor private addresses unless allowed).
    pub allow_all: bool,
    /// Names (and raw IPs) the devbox may reach.
    pub allowed_hostnames: Vec<HostPattern>,
    /// Other devboxes' addresses.
    pub allow_devbox_to_devbox: bool,
    /// The MCP gateway (`RL_MCP_URL`'s host), served by the hub itself.
    pub allow_mcp_gateway: bool,
    /// The agent gateway (`[agent_gateway] url`'s host), served by the hub itself.
    pub allow_agent_gateway: bool,
}

/// Facts about the deployment the policy needs.
#[derive(Debug, Clone, Default)]
pub struct Env {
    /// The MCP gateway's host (a name, or an IP when `RL_MCP_URL` uses one) and port.
    pub gateway: Option<(Target, u16)>,
    /// The agent gateway's host and port, when `[agent_gateway]` is configured.
    pub agent_gateway: Option<(Target, u16)>,
    /// Every devbox's source addresses.
    pub devbox_addrs: HashSet<IpAddr>,
    /// Non-public ranges the operator allows as destinations.
    pub allowed_private_ranges: Vec<ipnet::IpNet>,
    /// The hub's own socket addresses (loop guard).
    pub self_addrs: HashSet<SocketAddr>,
    /// The hub's own ports (loop guard for wildcard listeners).
    pub self_ports: HashSet<u16>,
    /// Services on the hub host the operator lets devboxes reach (`egress.allowed_host_services`):
    /// an address and a port, or every port (`None`).
    pub host_services: Vec<(IpAddr, Option<u16>)>,
}

impl Env {
    fn host_service(&self, a: IpAddr, port: u16) -> bool {
        self.host_services
            .iter()
            .any(|(ip, p)| *ip == a && p.is_none_or(|p| p == port))
    }
}

/// Why a destination is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    /// Served by the hub's MCP gateway; never dialled.
    McpGateway,
    /// Served by the hub's agent gateway; never dialled.
    AgentGateway,
    /// Matched `allowed_hostnames`.
    Hostname,
    /// `allow_all`.
    AllowAll,
    /// Another devbox under `allow_devbox_to_devbox`.
    DevboxToDevbox,
}

impl Allowance {
    /// Whether the hub serves this destination itself: intercepted and answered, never dialled.
    pub fn served_by_hub(self) -> bool {
        matches!(self, Self::McpGateway | Self::AgentGateway)
    }

    /// Stable reason code for audit and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::McpGateway => "mcp_gateway",
            Self::AgentGateway => "agent_gateway",
            Self::Hostname => "allowed_hostname",
            Self::AllowAll => "allow_all",
            Self::DevboxToDevbox => "devbox_to_devbox",
        }
    }
}

/// Why a connection is refused. Stable codes: they go into `X-Proxy-Error`, audit lines and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The source address belongs to no devbox.
    UnknownDevbox,
    /// The devbox has no network policy.
    NoNetworkPolicy,
    /// The name matches nothing in `allowed_hostnames`.
    NotInAllowedHostnames,
    /// MCP gateway without `allow_mcp_gateway`.
    McpGatewayNotAllowed,
    /// Agent gateway without `allow_agent_gateway`.
    AgentGatewayNotAllowed,
    /// A raw IP destination no policy allows.
    RawIp,
    /// Resolved to (or is) a non-public address without an operator allowance.
    PrivateAddress,
    /// Another devbox without `allow_devbox_to_devbox`.
    DevboxToDevboxNotAllowed,
    /// The hub's own listeners.
    LoopToHub,
    /// Unparseable host.
    InvalidHost,
    /// The name did not resolve.
    ResolveFailed,
    /// The devbox already has as many lookups in flight as one devbox may (a query flood).
    ResolveBusy,
    /// Neither TLS with SNI nor HTTP with Host, and nothing allows opaque TCP there.
    NoHostname,
    /// SNI, Host and request target disagree, or a tunnel carries another host than it was opened for.
    HostMismatch,
    /// A request head an origin could frame differently (two `Host`s, conflicting lengths).
    AmbiguousRequest,
    /// It started as an HTTP request and is not a valid one (obs-fold, a bare CR, a bad header).
    MalformedRequest,
    /// Opaque bytes (neither TLS nor HTTP) where only a named, checked protocol is allowed.
    OpaqueNotAllowed,
    /// One of the hub host's own addresses (any service on it, not only the hub's listeners).
    HostAddress,
}

impl DenyReason {
    /// Stable snake_case code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownDevbox => "unknown_devbox",
            Self::NoNetworkPolicy => "no_network_policy",
            Self::NotInAllowedHostnames => "not_in_allowed_hostnames",
            Self::McpGatewayNotAllowed => "mcp_gateway_not_allowed",
            Self::AgentGatewayNotAllowed => "agent_gateway_not_allowed",
            Self::RawIp => "raw_ip",
            Self::PrivateAddress => "private_address",
            Self::DevboxToDevboxNotAllowed => "devbox_to_devbox_not_allowed",
            Self::LoopToHub => "loop_to_hub",
            Self::InvalidHost => "invalid_host",
            Self::ResolveFailed => "resolve_failed",
            Self::ResolveBusy => "resolve_busy",
            Self::NoHostname => "no_hostname",
            Self::HostMismatch => "host_mismatch",
            Self::AmbiguousRequest => "ambiguous_request",
            Self::MalformedRequest => "malformed_request",
            Self::OpaqueNotAllowed => "opaque_not_allowed",
            Self::HostAddress => "host_address",
        }
    }
}

/// The outcome of `decide`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on (addresses still to be admitted).
    Allow(Allowance),
    /// Refuse.
    Deny(DenyReason),
}

/// Decide whether a devbox with `policy` may reach `target`.
///
/// Evaluation order (first match wins):
/// 1. no policy: deny `no_network_policy` (default deny);
/// 2. the MCP gateway (host and port of `RL_MCP_URL`): `allow_mcp_gateway` or deny `mcp_gateway_not_allowed`;
/// 3. the agent gateway (host and port of `[agent_gateway] url`): `allow_agent_gateway` or deny
///    `agent_gateway_not_allowed`;
/// 4. a raw IP of another devbox: `allow_devbox_to_devbox` or deny `devbox_to_devbox_not_allowed`;
/// 5. `allow_all`: allow;
/// 6. a matching `allowed_hostnames` entry: allow;
/// 7. otherwise deny: `raw_ip` for IPs, `not_in_allowed_hostnames` for names.
pub fn decide(policy: Option<&NetworkPolicy>, env: &Env, target: &Target, port: u16) -> Verdict {
    let Some(p) = policy else {
        return Verdict::Deny(DenyReason::NoNetworkPolicy);
    };
    if env
        .gateway
        .as_ref()
        .is_some_and(|(h, gp)| h == target && *gp == port)
    {
        return if p.allow_mcp_gateway {
            Verdict::Allow(Allowance::McpGateway)
        } else {
            Verdict::Deny(DenyReason::McpGatewayNotAllowed)
        };
    }
    if env
        .agent_gateway
        .as_ref()
        .is_some_and(|(h, gp)| h == target && *gp == port)
    {
        return if p.allow_agent_gateway {
            Verdict::Allow(Allowance::AgentGateway)
        } else {
            Verdict::Deny(DenyReason::AgentGatewayNotAllowed)
        };
    }
    if let Target::Ip(ip) = target {
        if env.devbox_addrs.contains(&canonical_ip(*ip)) {
            return if p.allow_devbox_to_devbox {
                Verdict::Allow(Allowance::DevboxToDevbox)
            } else {
                Verdict::Deny(DenyReason::DevboxToDevboxNotAllowed)
            };
        }
    }
    if p.allow_all {
        return Verdict::Allow(Allowance::AllowAll);
    }
    if p.allowed_hostnames.iter().any(|h| h.matches(target)) {
        return Verdict::Allow(Allowance::Hostname);
    }
    Verdict::Deny(match target {
        Target::Ip(_) => DenyReason::RawIp,
        Target::Name(_) => DenyReason::NotInAllowedHostnames,
    })
}

/// Decide for a DNS name (no port yet): a gateway host is that gateway whatever port it will be dialled
/// on; everything else as `decide`.
pub fn decide_name(policy: Option<&NetworkPolicy>, env: &Env, target: &Target) -> Verdict {
    match (&env.gateway, &env.agent_gateway) {
        (Some((h, port)), _) | (_, Some((h, port))) if h == target => {
            decide(policy, env, target, *port)
        }
        _ => decide(policy, env, target, 0),
    }
}

/// A destination that passed both steps: the exact addresses the proxy may dial.
#[derive(Debug, Clone)]
pub struct Allowed {
    allowance: Allowance,
    addrs: Vec<SocketAddr>,
}

impl Allowed {
    /// Why it was allowed.
    pub fn allowance(&self) -> Allowance {
        self.allowance
    }

    /// The checked addresses, in resolver order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

/// Admit the resolved addresses of an allowed destination.
///
/// SECURITY: every address is classified, and one non-public address (without an operator allowance)
/// refuses the whole answer, so a DNS answer mixing public and private addresses cannot be used to reach
/// inside. The hub's own listeners are always refused (loops), and so is every other port on every
/// address of the host (`host`: its interfaces' addresses, kept current by the caller; loopback and the
/// unspecified address count as the host's whatever `host` holds) unless the operator listed that
/// service in `allowed_host_services`.
///
/// # Errors
/// The reason for refusal.
pub fn admit(
    allowance: Allowance,
    env: &Env,
    host: &HashSet<IpAddr>,
    addrs: &[IpAddr],
    port: u16,
) -> Result<Allowed, DenyReason> {
    // The loop guard first: for the hub's own listeners it is the more precise reason.
    for &a in addrs {
        let a = canonical_ip(a);
        let local = is_host(host, a) || env.self_addrs.iter().any(|s| s.ip() == a);
        if env.self_addrs.contains(&SocketAddr::new(a, port))
            || (env.self_ports.contains(&port) && local)
        {
            return Err(DenyReason::LoopToHub);
        }
    }
    if addrs.is_empty() {
        return Err(DenyReason::ResolveFailed);
    }
    let mut out = Vec::with_capacity(addrs.len());
    for &a in addrs {
        let a = canonical_ip(a);
        if is_host(host, a) {
            if !env.host_service(a, port) {
                return Err(DenyReason::HostAddress);
            }
        } else if !address_allowed(allowance, env, a) {
            return Err(DenyReason::PrivateAddress);
        }
        out.push(SocketAddr::new(a, port));
    }
    Ok(Allowed {
        allowance,
        addrs: out,
    })
}

/// Whether `a` (canonical) is the host itself.
fn is_host(host: &HashSet<IpAddr>, a: IpAddr) -> bool {
    matches!(ip::classify(a), IpClass::Loopback | IpClass::Unspecified) || host.contains(&a)
}

/// The class check of one address: public, another devbox's (devbox-to-devbox), or in an
/// operator-allowed range.
fn address_allowed(allowance: Allowance, env: &Env, a: IpAddr) -> bool {
    ip::classify(a) == IpClass::Public
        || (allowance == Allowance::DevboxToDevbox && env.devbox_addrs.contains(&a))
        || env.allowed_private_ranges.iter().any(|r| r.contains(&a))
}

/// The address half of `admit`, for answers that have no port yet (the DNS responder): every address
/// must be public, another devbox's (devbox-to-devbox), or in an operator-allowed range.
///
/// # Errors
/// `ResolveFailed` for no addresses, `PrivateAddress` for any refused one.
pub fn admit_addresses(
    allowance: Allowance,
    env: &Env,
    addrs: &[IpAddr],
) -> Result<Vec<IpAddr>, DenyReason> {
    if addrs.is_empty() {
        return Err(DenyReason::ResolveFailed);
    }
    let mut out = Vec::with_capacity(addrs.len());
    for &a in addrs {
        let a = canonical_ip(a);
        if !address_allowed(allowance, env, a) {
            return Err(DenyReason::PrivateAddress);
        }
        out.push(a);
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
