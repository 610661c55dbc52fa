//! The agent gateway's configuration: `[agent_gateway]` (where devboxes reach it) and
//! `[[gateway_configs]]` (the REST APIs behind it), validated into domain types.
//!
//! Two system configs, `anthropic` and `openai`, exist without being written: they are what almost every
//! operator binds first, and keeping them out of `hub.toml` means nobody can get their endpoint or key
//! header wrong. Their names are reserved.

use std::sync::Arc;
use std::time::Duration;

use globset::{GlobBuilder, GlobMatcher};
use http::{HeaderName, Method, Uri};

use super::raw::{RawAgentGateway, RawAuthMechanism, RawGatewayConfig};
use super::validate::{Issues, Taken};
use super::{CredentialPlacement, origin::Origin};
use crate::policy::tools::ToolFilter;

/// `[agent_gateway]` after validation. Served by the `[gateway]` listener, told apart by host.
#[derive(Debug, Clone)]
pub struct AgentGatewaySettings {
    /// `ENV_URL` as devboxes see it, e.g. `https://agents.hub.internal:8443`.
    pub url: Uri,
    /// Its host, lowercase, without brackets: on the hub's certificate, and how requests are routed.
    pub host: String,
    /// Its port (443 when the URL names none): what the egress proxy intercepts.
    pub port: u16,
    /// The URL's path without a trailing `/` (normally empty). Only needed when the agent gateway
    /// shares the MCP gateway's host (the demo, on `localhost`): requests under it are the agent
    /// gateway's, with the prefix removed.
    pub path_prefix: String,
    /// Largest request body forwarded (413 above): long contexts and images.
    pub max_body_bytes: usize,
    /// Longest silence allowed while waiting for the upstream's response head, and between two pieces of
    /// its body. There is no deadline on a whole response: a streamed completion may run for minutes.
    pub idle_timeout: Duration,
}

/// Where the bound secret goes on requests to the upstream API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMechanism {
    /// `Authorization: Bearer <secret>` (OpenAI and most APIs).
    Bearer,
    /// `<key>: <secret>` (Anthropic's `x-api-key`, Azure's `api-key`).
    Header(HeaderName),
}

impl AuthMechanism {
    /// The header placement the credential renderer takes.
    pub fn placement(&self) -> CredentialPlacement {
        match self {
            Self::Bearer => CredentialPlacement::default(),
            Self::Header(h) => CredentialPlacement {
                header: h.clone(),
                template: super::validate::SECRET_PLACEHOLDER.to_string(),
            },
        }
    }

    /// `bearer` or `header`, as written in `hub.toml`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::Header(_) => "header",
        }
    }

    /// The header name for `header`, none for `bearer`.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Bearer => None,
            Self::Header(h) => Some(h.as_str()),
        }
    }
}

/// One `allowed_paths` entry: `METHOD /path/glob`, or `/path/glob` for any method.
#[derive(Debug, Clone)]
pub struct Route {
    method: Option<Method>,
    path: GlobMatcher,
}

/// Which requests a gateway config lets through. `None` on the config means every request.
#[derive(Debug, Clone)]
pub struct Routes {
    routes: Vec<Route>,
    /// As written, for `get` and errors.
    pub patterns: Vec<String>,
}

impl Routes {
    /// Compile `METHOD /glob` entries. In a path glob `*` stays within one segment and `**` spans any
    /// number, so `POST /v1/*` admits `/v1/messages` but not `/v1/messages/batches`.
    ///
    /// # Errors
    /// The index of the first bad entry and why.
    pub fn new(patterns: &[String]) -> Result<Self, (usize, String)> {
        let mut routes = Vec::new();
        for (i, p) in patterns.iter().enumerate() {
            let (method, path) = match p.trim().split_once(' ') {
                Some((m, path)) => (Some(m), path.trim()),
                None => (None, p.trim()),
            };
            let method = match method {
                None | Some("*") => None,
                Some(m) if m.bytes().all(|b| b.is_ascii_uppercase()) => Some(
                    Method::from_bytes(m.as_bytes())
                        .map_err(|_| (i, format!("{m:?} is not an HTTP method")))?,
                ),
                Some(m) => {
                    return Err((
                        i,
                        format!(
                            "{m:?} is not an HTTP method; write it in capitals, e.g. \"POST /v1/messages\""
                        ),
                    ));
                }
            };
            if !path.starts_with('/') {
                return Err((
                    i,
                    "must be \"METHOD /path\" with the path starting at /, e.g. \"POST /v1/messages\""
                        .into(),
                ));
            }
            let path = GlobBuilder::new(path)
                .literal_separator(true)
                .build()
                .map_err(|e| (i, format!("invalid path glob: {}", e.kind())))?
                .compile_matcher();
            routes.push(Route { method, path });
        }
        Ok(Self {
            routes,
            patterns: patterns.to_vec(),
        })
    }

    /// Whether `method path` (the path as the devbox sent it, without the query) is admitted.
    pub fn allows(&self, method: &Method, path: &str) -> bool {
        self.routes
            .iter()
            .any(|r| r.method.as_ref().is_none_or(|m| m == method) && r.path.is_match(path))
    }
}

/// One REST API behind the agent gateway.
#[derive(Debug)]
pub struct GatewayConfig {
    /// Stable id (`gwc_…`).
    pub id: String,
    /// Unique name, used in bindings, logs and errors.
    pub name: String,
    /// The API's base URL; a request for `/<path>` goes to this URL's path + `/<path>`.
    pub endpoint: Uri,
    /// Scheme, host and port of `endpoint`.
    pub origin: Arc<Origin>,
    /// `endpoint`'s path without a trailing `/` (empty for the root).
    pub base_path: String,
    /// Where the secret goes.
    pub auth: AuthMechanism,
    /// Free text for operators.
    pub description: String,
    /// When it was created (0 for system configs).
    pub create_time_ms: u64,
    /// Method and path globs a request must match; `None`: every request.
    pub allowed_paths: Option<Routes>,
    /// Globs the JSON body's `model` must match; `None`: any model (and the body is not read).
    pub allowed_models: Option<ToolFilter>,
    /// Built in: listed, bindable, never written, not editable or deletable.
    pub system: bool,
}

/// Names of the built-in configs.
pub const SYSTEM_CONFIGS: &[&str] = &["anthropic", "openai"];

/// The built-in configs, as every hub has them.
pub fn system_configs() -> Vec<Arc<GatewayConfig>> {
    let make = |name: &str, endpoint: &str, auth: AuthMechanism, description: &str| {
        let (endpoint, origin) = super::validate::endpoint(endpoint)
            .unwrap_or_else(|_| unreachable!("the built-in endpoints are valid URLs"));
        Arc::new(GatewayConfig {
            id: format!("gwc_{name}"),
            name: name.to_string(),
            base_path: base_path(&endpoint),
            endpoint,
            origin,
            auth,
            description: description.to_string(),
            create_time_ms: 0,
            allowed_paths: None,
            allowed_models: None,
            system: true,
        })
    };
    vec![
        make(
            "anthropic",
            "https://api.anthropic.com",
            AuthMechanism::Header(HeaderName::from_static("x-api-key")),
            "Anthropic API (system config)",
        ),
        make(
            "openai",
            "https://api.openai.com/v1",
            AuthMechanism::Bearer,
            "OpenAI API (system config)",
        ),
    ]
}

fn base_path(u: &Uri) -> String {
    u.path().trim_end_matches('/').to_string()
}

/// Headers the hub sets or strips itself; a config may not put its secret in one of them.
const MANAGED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "cookie",
    "proxy-authorization",
    "accept",
    "accept-encoding",
];

/// Validate `auth_mechanism`'s header for `type = "header"`.
///
/// # Errors
/// What is wrong and how to fix it.
pub fn auth_header(key: &str) -> Result<AuthMechanism, String> {
    let name: HeaderName = key
        .parse()
        .map_err(|_| format!("{key:?} is not a valid HTTP header name"))?;
    if MANAGED_HEADERS.contains(&name.as_str()) {
        return Err(format!(
            "{key:?} is managed by the hub; pick the header the API reads its key from"
        ));
    }
    if name == http::header::AUTHORIZATION {
        return Err("use { type = \"bearer\" } for Authorization: Bearer".into());
    }
    Ok(AuthMechanism::Header(name))
}

/// Validate a gateway endpoint: an http(s) URL with a host, maybe a path, no query or credentials.
///
/// # Errors
/// What is wrong and how to fix it.
pub fn gateway_endpoint(s: &str) -> Result<(Uri, Arc<Origin>), String> {
    let (uri, origin) = super::validate::endpoint(s)
        .map_err(|m| m.replace("https://mcp.example.com/mcp", "https://api.openai.com/v1"))?;
    if uri.query().is_some() {
        return Err("must not have a query string; the devbox's query is forwarded as sent".into());
    }
    Ok((uri, origin))
}

pub(crate) fn gateway_configs(
    raws: Vec<(usize, RawGatewayConfig)>,
    issues: &mut Issues<'_>,
) -> Vec<Arc<GatewayConfig>> {
    let mut out = system_configs();
    let mut taken = Taken::new("gateway_config", "gwc_");
    for c in &out {
        taken.reserve(&c.name, &c.id);
    }
    for (i, r) in raws {
        let at = |k: &str| format!("gateway_configs[{i}].{k}");
        let reserved = SYSTEM_CONFIGS.contains(&r.name.as_str()).then(|| {
            format!(
                "{:?} is a system config every hub has; give yours another name (e.g. \"{}-restricted\")",
                r.name, r.name
            )
        });
        let id = taken.claim(i, &r.name, r.id.as_deref(), reserved, issues);
        let endpoint = gateway_endpoint(&r.endpoint)
            .map_err(|m| issues.push(at("endpoint"), format!("{:?}: {m}", r.endpoint)))
            .ok();
        let auth = match &r.auth_mechanism {
            RawAuthMechanism::Bearer => Some(AuthMechanism::Bearer),
            RawAuthMechanism::Header { key } => auth_header(key)
                .map_err(|m| issues.push(at("auth_mechanism.key"), m))
                .ok(),
        };
        let allowed_paths = match &r.allowed_paths {
            None => Some(None),
            Some(p) => Routes::new(p)
                .map(Some)
                .map_err(|(j, m)| {
                    issues.push(format!("gateway_configs[{i}].allowed_paths[{j}]"), m)
                })
                .ok(),
        };
        let allowed_models = match &r.allowed_models {
            None => Some(None),
            Some(p) => ToolFilter::new(p)
                .map(Some)
                .map_err(|(j, m)| {
                    issues.push(
                        format!("gateway_configs[{i}].allowed_models[{j}]"),
                        m.replace("allow every tool", "allow every model"),
                    )
                })
                .ok(),
        };
        if let (
            Some(id),
            Some((endpoint, origin)),
            Some(auth),
            Some(allowed_paths),
            Some(allowed_models),
        ) = (id, endpoint, auth, allowed_paths, allowed_models)
        {
            out.push(Arc::new(GatewayConfig {
                id,
                name: r.name,
                base_path: base_path(&endpoint),
                endpoint,
                origin,
                auth,
                description: r.description.unwrap_or_default(),
                create_time_ms: r.create_time_ms.unwrap_or(0),
                allowed_paths,
                allowed_models,
                system: false,
            }));
        }
    }
    out
}

pub(crate) fn agent_gateway(
    raw: &RawAgentGateway,
    mcp_host: &super::GatewaySettings,
    issues: &mut Issues<'_>,
) -> Option<AgentGatewaySettings> {
    let Some(u) = raw.url.as_deref() else {
        issues.push(
            "agent_gateway.url",
            "is required in [agent_gateway]: the URL devboxes get as ENV_URL, e.g. \"https://agents.hub.internal:8443\"",
        );
        return None;
    };
    let parsed = u
        .parse::<Uri>()
        .ok()
        .filter(|uri| uri.scheme_str() == Some("https"))
        .and_then(|uri| {
            let host = uri
                .host()?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase();
            Some((host, uri))
        });
    let Some((host, url)) = parsed else {
        issues.push(
            "agent_gateway.url",
            format!("{u:?} must be an https:// URL with a host, e.g. \"https://agents.hub.internal:8443\""),
        );
        return None;
    };
    if url.query().is_some() {
        issues.push(
            "agent_gateway.url",
            format!("{u:?} must have no query: clients append the API's paths to it"),
        );
        return None;
    }
    let path_prefix = url.path().trim_end_matches('/').to_string();
    if host == mcp_host.host {
        // One host for both gateways: told apart by path, so the paths must not overlap.
        let mcp = mcp_host.path.trim_end_matches('/');
        let overlap = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/")) || b.is_empty();
        if path_prefix.is_empty() || overlap(&path_prefix, mcp) || overlap(mcp, &path_prefix) {
            issues.push(
                "agent_gateway.url",
                format!(
                    "{u:?} has the MCP gateway's host; give it a host of its own (both go on the hub's \
                     certificate), or a path beside the MCP gateway's {:?}, e.g. \"https://{host}:{}/agents\"",
                    mcp_host.path,
                    url.port_u16().unwrap_or(443)
                ),
            );
            return None;
        }
    }
    let max_body_bytes = raw.max_body_bytes.unwrap_or(32 << 20);
    if max_body_bytes == 0 || max_body_bytes > 1 << 30 {
        issues.push(
            "agent_gateway.max_body_bytes",
            format!(
                "{max_body_bytes} is out of range; use a value between 1 and {}",
                1u64 << 30
            ),
        );
    }
    let idle = raw.idle_timeout_ms.unwrap_or(300_000);
    if !(100..=3_600_000).contains(&idle) {
        issues.push(
            "agent_gateway.idle_timeout_ms",
            format!("{idle} is out of range; use a value between 100 and 3600000"),
        );
    }
    Some(AgentGatewaySettings {
        port: url.port_u16().unwrap_or(443),
        url: format!(
            "https://{}{path_prefix}",
            url.authority().map_or(host.as_str(), |a| a.as_str())
        )
        .parse()
        .unwrap_or(url),
        host,
        path_prefix,
        max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
        idle_timeout: Duration::from_millis(idle),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_method_and_segments() {
        let r = Routes::new(&[
            "POST /v1/messages".into(),
            "POST /v1/messages/count_tokens".into(),
            "GET /v1/models/**".into(),
            "/health".into(),
        ])
        .unwrap();
        assert!(r.allows(&Method::POST, "/v1/messages"));
        assert!(!r.allows(&Method::GET, "/v1/messages"));
        assert!(!r.allows(&Method::POST, "/v1/messages/batches"));
        assert!(r.allows(&Method::GET, "/v1/models/a/b"));
        assert!(r.allows(&Method::DELETE, "/health"));
        let one = Routes::new(&["POST /v1/*".into()]).unwrap();
        assert!(one.allows(&Method::POST, "/v1/messages"));
        assert!(!one.allows(&Method::POST, "/v1/messages/batches"));
        assert!(Routes::new(&["post /v1".into()]).is_err());
        assert!(Routes::new(&["POST v1".into()]).is_err());
    }

    #[test]
    fn gateway_config_names_and_ids_are_checked() {
        let text = r#"
version = 1
[gateway]
url = "https://mcp.hub.internal/mcp"
[agent_gateway]
url = "https://agents.hub.internal"
[[gateway_configs]]
name = "anthropic"
endpoint = "https://api.anthropic.com"
auth_mechanism = { type = "bearer" }
[[gateway_configs]]
name = "mine"
endpoint = "https://api.example.com"
auth_mechanism = { type = "bearer" }
[[gateway_configs]]
name = "mine"
id = "gwc_openai"
endpoint = "https://api.example.com"
auth_mechanism = { type = "header", key = "host" }
"#;
        let e = crate::config::parse(text, std::path::Path::new("hub.toml")).unwrap_err();
        let got: Vec<String> = e
            .issues()
            .iter()
            .map(|i| format!("{}: {}", i.path, i.message))
            .collect();
        for want in [
            "gateway_configs[0].name: \"anthropic\" is a system config",
            "gateway_configs[2].name: \"mine\" is used by another gateway_config",
            "gateway_configs[2].id: \"gwc_openai\" is used by another gateway_config",
            "gateway_configs[2].auth_mechanism.key: \"host\" is managed by the hub",
        ] {
            assert!(got.iter().any(|g| g.starts_with(want)), "{want}: {got:#?}");
        }
        assert_eq!(got.len(), 4, "{got:#?}");
    }

    #[test]
    fn system_configs_are_the_providers() {
        let s = system_configs();
        assert_eq!(s[0].name, "anthropic");
        assert_eq!(s[0].auth.key(), Some("x-api-key"));
        assert_eq!(s[1].base_path, "/v1");
        assert_eq!(s[1].auth, AuthMechanism::Bearer);
    }
}
