//! Serde shapes of the files the operator edits. Strings only; `validate` turns them into domain types.
//!
//! Every struct denies unknown keys: an ignored, misspelled key would be a silent policy hole.

use serde::Deserialize;

/// `[hub]`: where the hub keeps its state.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHub {
    pub(crate) state_dir: Option<String>,
    pub(crate) secrets_file: Option<String>,
}

/// `[gateway]`: the MCP endpoint devboxes talk to.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGateway {
    pub(crate) listen: Option<String>,
    pub(crate) url: Option<String>,
    pub(crate) allowed_origins: Option<Vec<String>>,
    pub(crate) max_body_bytes: Option<u64>,
    pub(crate) max_response_bytes: Option<u64>,
    pub(crate) client_timeout_ms: Option<u64>,
    pub(crate) upstream_connect_timeout_ms: Option<u64>,
    pub(crate) upstream_response_timeout_ms: Option<u64>,
    pub(crate) max_connections: Option<u64>,
    pub(crate) upstream_ca_file: Option<String>,
}

/// One `[[mcp_configs]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMcpConfig {
    pub(crate) id: Option<String>,
    pub(crate) name: String,
    pub(crate) endpoint: String,
    pub(crate) allowed_tools: Vec<String>,
    pub(crate) description: Option<String>,
    pub(crate) create_time_ms: Option<u64>,
    pub(crate) credential: Option<RawCredential>,
    #[serde(default)]
    pub(crate) pin_tools: bool,
}

/// `[mcp_configs.credential]`: where the secret goes on the upstream request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCredential {
    pub(crate) header: String,
    pub(crate) value: String,
}

/// `[egress]`: the forward proxy devboxes are routed through.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEgress {
    pub(crate) transparent_listen: Option<String>,
    pub(crate) explicit_listen: Option<String>,
    pub(crate) dns_listen: Option<String>,
    pub(crate) devbox_interfaces: Option<Vec<String>>,
    pub(crate) gateway_addresses: Option<Vec<String>>,
    pub(crate) allowed_private_ranges: Option<Vec<String>>,
    pub(crate) allowed_host_services: Option<Vec<String>>,
    pub(crate) resolvers: Option<Vec<String>>,
    pub(crate) agent_gateway_hosts: Option<Vec<String>>,
    pub(crate) connect_timeout_ms: Option<u64>,
    pub(crate) idle_timeout_ms: Option<u64>,
    pub(crate) client_hello_timeout_ms: Option<u64>,
}

/// `[agent_gateway]`: the HTTPS endpoint devboxes reach REST APIs (the LLM provider) through.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAgentGateway {
    pub(crate) url: Option<String>,
    pub(crate) max_body_bytes: Option<u64>,
    pub(crate) idle_timeout_ms: Option<u64>,
}

/// One `[[gateway_configs]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGatewayConfig {
    pub(crate) id: Option<String>,
    pub(crate) name: String,
    pub(crate) endpoint: String,
    pub(crate) auth_mechanism: RawAuthMechanism,
    pub(crate) description: Option<String>,
    pub(crate) create_time_ms: Option<u64>,
    pub(crate) allowed_paths: Option<Vec<String>>,
    pub(crate) allowed_models: Option<Vec<String>>,
}

/// `auth_mechanism = { type = "bearer" }` or `{ type = "header", key = "x-api-key" }`.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub(crate) enum RawAuthMechanism {
    Bearer,
    Header { key: String },
}

/// `[admin]`: the loopback listener for health and metrics.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub(crate) listen: Option<String>,
    pub(crate) socket: Option<String>,
}

/// One `[[network_policies]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNetworkPolicy {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) allow_all: bool,
    #[serde(default)]
    pub(crate) allowed_hostnames: Vec<String>,
    #[serde(default)]
    pub(crate) allow_devbox_to_devbox: bool,
    #[serde(default)]
    pub(crate) allow_mcp_gateway: bool,
    #[serde(default)]
    pub(crate) allow_agent_gateway: bool,
}
