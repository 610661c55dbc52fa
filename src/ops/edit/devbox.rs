//! `devbox create|bind|unbind|set-policy|limit|revoke|rotate|delete|env`: devboxes, their
//! `ENV_VAR -> {mcp_config, secret}` and `ENV_VAR -> {gateway_config, secret}` bindings, and one token
//! per binding.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Changed, Done, ManageError, Workspace};
use crate::config::ConfigError;
use crate::state::devboxes::{Devbox, Devboxes, GatewayBinding, McpBinding, env_url};
use crate::state::token::Kind;
use crate::state::tokens::Tokens;
use crate::state::{fsutil, load_token_key};

/// One binding: `ENV_VAR=MCP_CONFIG:SECRET` on the command line, an object on the admin socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// One agent-gateway binding: `ENV_VAR=GATEWAY_CONFIG:SECRET` on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    /// Env var in the devbox (its URL goes into `ENV_VAR_URL`).
    pub env_var: String,
    /// Gateway config name or id.
    pub gateway_config: String,
    /// Secret name.
    pub secret: String,
}

impl std::str::FromStr for GatewaySpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let b: BindingSpec = s
            .parse()
            .map_err(|_| "expected ENV_VAR=GATEWAY_CONFIG:SECRET".to_string())?;
        Ok(Self {
            env_var: b.env_var,
            gateway_config: b.mcp_config,
            secret: b.secret,
        })
    }
}

/// A per-binding limit on the command line: a number, or `none` to lift it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitArg(pub Option<u64>);

impl std::str::FromStr for LimitArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self(None)),
            n => match n.parse::<u64>() {
                Ok(v) if v > 0 => Ok(Self(Some(v))),
                _ => Err("expected a positive number, or `none` to lift the limit".into()),
            },
        }
    }
}

/// Create a devbox with MCP and agent-gateway bindings; prints its environment.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Create {
    /// Devbox name.
    pub name: String,
    /// Source address the host sees the devbox at (repeatable). Tokens are refused from elsewhere.
    #[arg(long = "address")]
    pub addresses: Vec<IpAddr>,
    /// Its network policy (a `[[network_policies]]` name); without one it has no network at all.
    #[arg(long)]
    pub network_policy: Option<String>,
    /// ENV_VAR=MCP_CONFIG:SECRET, e.g. GITHUB_MCP_SECRET=github:GITHUB_MCP_TOKEN (repeatable).
    #[arg(long = "mcp")]
    pub mcp: Vec<BindingSpec>,
    /// ENV_VAR=GATEWAY_CONFIG:SECRET, e.g. ANTHROPIC=anthropic:ANTHROPIC_KEY (repeatable): the devbox
    /// gets ENV_VAR_URL and an opaque ENV_VAR token for the agent gateway.
    #[arg(long = "gateway")]
    #[serde(default)]
    pub gateway: Vec<GatewaySpec>,
}

/// Add MCP or agent-gateway bindings to a devbox.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bind {
    /// Devbox name.
    pub name: String,
    /// ENV_VAR=MCP_CONFIG:SECRET (repeatable).
    #[arg(long = "mcp", required_unless_present = "gateway")]
    #[serde(default)]
    pub mcp: Vec<BindingSpec>,
    /// ENV_VAR=GATEWAY_CONFIG:SECRET (repeatable).
    #[arg(long = "gateway")]
    #[serde(default)]
    pub gateway: Vec<GatewaySpec>,
}

/// Set or lift an agent-gateway binding's limits (answered with 429 and `retry-after` once reached).
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Devbox name.
    pub name: String,
    /// Env var of the gateway binding.
    pub env_var: String,
    /// Requests per minute, or `none`.
    #[arg(long)]
    pub max_requests_per_minute: Option<LimitArg>,
    /// Tokens (input + output as the upstream reports them) per UTC day, or `none`.
    #[arg(long)]
    pub max_tokens_per_day: Option<LimitArg>,
}

/// One binding of a devbox.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// Devbox name.
    pub name: String,
    /// Env var of the binding.
    pub env_var: String,
}

/// Set (or with no POLICY, clear) a devbox's network policy.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetPolicy {
    /// Devbox name.
    pub name: String,
    /// A `[[network_policies]]` name.
    pub policy: Option<String>,
}

/// Revoke a binding's token (or all of the devbox's tokens).
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoke {
    /// Devbox name.
    pub name: String,
    /// Env var of the binding; omit to revoke all.
    pub env_var: Option<String>,
}

/// A devbox by name.
#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Named {
    /// Devbox name.
    pub name: String,
}

fn no_devbox(name: &str) -> ManageError {
    ManageError::NotFound(format!("no devbox named {name:?}"))
}

fn find<'a>(ws: &'a Workspace, name: &str) -> Result<&'a Devbox, ManageError> {
    ws.devboxes.get(name).ok_or_else(|| no_devbox(name))
}

fn find_mut<'a>(devboxes: &'a mut Devboxes, name: &str) -> Result<&'a mut Devbox, ManageError> {
    devboxes
        .list
        .iter_mut()
        .find(|d| d.name == name)
        .ok_or_else(|| no_devbox(name))
}

fn issue(tokens: &mut Tokens, name: &str, env_var: &str) -> Result<(), ManageError> {
    tokens
        .issue(name, env_var)
        .map(drop)
        .map_err(|e| ManageError::Io {
            context: "issuing token".into(),
            source: std::io::Error::other(e),
        })
}

fn taken(name: &str, env: &str) -> ManageError {
    ManageError::Conflict(format!(
        "{name}/{env} is already bound (or is a gateway binding's _URL variable); use `devbox unbind` first"
    ))
}

/// Add `bindings` and `gateways` to devbox `name`, each with a fresh token.
fn bind(
    ws: &mut Workspace,
    name: &str,
    bindings: Vec<BindingSpec>,
    gateways: Vec<GatewaySpec>,
) -> Result<(), ManageError> {
    let d = find_mut(&mut ws.devboxes, name)?;
    for g in gateways {
        let Some(url) = env_url(&g.env_var) else {
            return Err(ManageError::BadInput(format!(
                "{:?} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)",
                g.env_var
            )));
        };
        if d.env_taken(&g.env_var) || d.env_taken(&url) {
            return Err(taken(name, &g.env_var));
        }
        d.gateways.insert(
            g.env_var.clone(),
            GatewayBinding {
                gateway_config: g.gateway_config,
                secret: g.secret,
                max_requests_per_minute: None,
                max_tokens_per_day: None,
            },
        );
        issue(&mut ws.tokens, name, &g.env_var)?;
    }
    for b in bindings {
        if d.env_taken(&b.env_var) {
            return Err(taken(name, &b.env_var));
        }
        d.mcp.insert(
            b.env_var.clone(),
            McpBinding {
                mcp_config: b.mcp_config,
                secret: b.secret,
            },
        );
        issue(&mut ws.tokens, name, &b.env_var)?;
    }
    Ok(())
}

fn check_binding(ws: &Workspace, name: &str, env_var: &str) -> Result<(), ManageError> {
    let d = find(ws, name)?;
    if !d.mcp.contains_key(env_var) && !d.gateways.contains_key(env_var) {
        return Err(ManageError::NotFound(format!(
            "devbox {name:?} has no binding {env_var:?}"
        )));
    }
    Ok(())
}

impl Create {
    /// The devbox, its bindings, and one fresh token per binding; answers with its environment.
    ///
    /// # Errors
    /// Exists, or invalid bindings.
    pub fn apply(self, ws: &mut Workspace) -> Result<Done, ManageError> {
        let name = self.name;
        if ws.devboxes.get(&name).is_some() {
            return Err(ManageError::Conflict(format!(
                "devbox {name:?} exists; use `devbox bind` to add servers"
            )));
        }
        ws.devboxes.list.push(Devbox {
            name: name.clone(),
            addresses: self.addresses,
            create_time_ms: fsutil::now_ms(),
            network_policy: self.network_policy,
            mcp: Default::default(),
            gateways: Default::default(),
        });
        bind(ws, &name, self.mcp, self.gateway)?;
        ws.commit(Changed::DEVBOXES_AND_TOKENS)?;
        Ok(Done {
            message: format!("created devbox {name}"),
            env: env(ws, &name)?,
        })
    }
}

impl Bind {
    /// Add servers to an existing devbox; answers with its environment.
    ///
    /// # Errors
    /// Unknown devbox or invalid bindings.
    pub fn apply(self, ws: &mut Workspace) -> Result<Done, ManageError> {
        bind(ws, &self.name, self.mcp, self.gateway)?;
        ws.commit(Changed::DEVBOXES_AND_TOKENS)?;
        Ok(Done {
            message: format!("bound to devbox {}", self.name),
            env: env(ws, &self.name)?,
        })
    }
}

impl Binding {
    /// `devbox unbind`: remove the binding and its token.
    ///
    /// # Errors
    /// Unknown devbox or binding.
    pub fn unbind(self, ws: &mut Workspace) -> Result<Done, ManageError> {
        let Self { name, env_var } = self;
        let d = find_mut(&mut ws.devboxes, &name)?;
        if d.mcp.remove(&env_var).is_none() && d.gateways.remove(&env_var).is_none() {
            return Err(ManageError::NotFound(format!(
                "devbox {name:?} has no binding {env_var:?}"
            )));
        }
        ws.tokens.revoke(&name, &env_var);
        ws.commit(Changed::DEVBOXES_AND_TOKENS)?;
        Ok(Done::said(format!("removed {name}/{env_var}")))
    }

    /// `devbox rotate`: a new token for the binding; the old one stops working. Answers with the
    /// binding's new line.
    ///
    /// # Errors
    /// Unknown devbox or binding.
    pub fn rotate(self, ws: &mut Workspace) -> Result<Done, ManageError> {
        let Self { name, env_var } = self;
        check_binding(ws, &name, &env_var)?;
        issue(&mut ws.tokens, &name, &env_var)?;
        ws.commit(Changed::TOKENS)?;
        Ok(Done {
            message: format!("rotated {name}/{env_var}"),
            env: env(ws, &name)?
                .into_iter()
                .filter(|(k, _)| *k == env_var)
                .collect(),
        })
    }
}

impl SetPolicy {
    /// Name the devbox's network policy (`None`: no network at all).
    ///
    /// # Errors
    /// Unknown devbox or policy.
    pub fn apply(self, ws: &mut Workspace) -> Result<Done, ManageError> {
        find_mut(&mut ws.devboxes, &self.name)?.network_policy = self.policy.clone();
        ws.commit(Changed::DEVBOXES)?;
        Ok(Done::said(format!(
            "devbox {}: network policy {}",
            self.name,
            self.policy.as_deref().unwrap_or("(none: no network)")
        )))
    }
}

impl Limit {
    /// Change the limits named; the others stay as they are.
    ///
    /// # Errors
    /// Unknown devbox or gateway binding, or nothing to change.
    pub fn apply(self, ws: &mut Workspace) -> Result<Done, ManageError> {
        if self.max_requests_per_minute.is_none() && self.max_tokens_per_day.is_none() {
            return Err(ManageError::BadInput(
                "nothing to change; give --max-requests-per-minute and/or --max-tokens-per-day"
                    .into(),
            ));
        }
        let d = find_mut(&mut ws.devboxes, &self.name)?;
        let Some(g) = d.gateways.get_mut(&self.env_var) else {
            return Err(ManageError::NotFound(format!(
                "devbox {:?} has no gateway binding {:?}",
                self.name, self.env_var
            )));
        };
        if let Some(LimitArg(v)) = self.max_requests_per_minute {
            g.max_requests_per_minute = match v.map(u32::try_from) {
                None => None,
                Some(Ok(v)) => Some(v),
                Some(Err(_)) => {
                    return Err(ManageError::BadInput(
                        "--max-requests-per-minute is at most 4294967295".into(),
                    ));
                }
            };
        }
        if let Some(LimitArg(v)) = self.max_tokens_per_day {
            g.max_tokens_per_day = v;
        }
        let said = format!(
            "{}/{}: max_requests_per_minute {}, max_tokens_per_day {}",
            self.name,
            self.env_var,
            g.max_requests_per_minute
                .map_or("none".to_string(), |v| v.to_string()),
            g.max_tokens_per_day
                .map_or("none".to_string(), |v| v.to_string()),
        );
        ws.commit(Changed::DEVBOXES)?;
        Ok(Done::said(said))
    }
}

impl Revoke {
    /// The binding stays, its token stops working; without an env var, every binding's.
    ///
    /// # Errors
    /// Unknown devbox or binding.
    pub fn apply(self, ws: &mut Workspace) -> Result<Done, ManageError> {
        let name = self.name;
        let envs: Vec<String> = match self.env_var {
            Some(e) => {
                check_binding(ws, &name, &e)?;
                vec![e]
            }
            None => {
                let d = find(ws, &name)?;
                d.mcp.keys().chain(d.gateways.keys()).cloned().collect()
            }
        };
        let revoked: Vec<String> = envs
            .into_iter()
            .filter(|e| ws.tokens.revoke(&name, e))
            .collect();
        ws.commit(Changed::TOKENS)?;
        Ok(Done::said(format!(
            "revoked {} token(s) of {name}: {}",
            revoked.len(),
            revoked.join(", ")
        )))
    }
}

impl Named {
    /// `devbox delete`: the devbox, its bindings and tokens.
    ///
    /// # Errors
    /// Unknown devbox.
    pub fn delete(self, ws: &mut Workspace) -> Result<Done, ManageError> {
        let name = self.name;
        let before = ws.devboxes.list.len();
        ws.devboxes.list.retain(|d| d.name != name);
        if ws.devboxes.list.len() == before {
            return Err(no_devbox(&name));
        }
        ws.tokens.tokens.remove(&name);
        ws.commit(Changed::DEVBOXES_AND_TOKENS)?;
        Ok(Done::said(format!("deleted devbox {name}")))
    }

    /// `devbox env`: the devbox's environment.
    ///
    /// # Errors
    /// Unknown devbox or missing token key.
    pub fn env(self, ws: &Workspace) -> Result<Done, ManageError> {
        Ok(Done {
            message: String::new(),
            env: env(ws, &self.name)?,
        })
    }
}

/// `RL_MCP_URL`, one `ENV_VAR=token` per MCP binding with a live token, and `ENV_VAR_URL=…` with
/// `ENV_VAR=token` per agent-gateway binding with a live token.
///
/// # Errors
/// Unknown devbox or missing token key.
pub fn env(ws: &Workspace, name: &str) -> Result<Vec<(String, String)>, ManageError> {
    let d = find(ws, name)?;
    let key = load_token_key(&ws.config.paths.token_key_file)
        .map_err(|e| ConfigError::Invalid(vec![e]))?
        .ok_or_else(|| ManageError::NotFound("no token key yet; create a devbox first".into()))?;
    let mut out = vec![("RL_MCP_URL".to_string(), ws.config.gateway.url.to_string())];
    for env in d.mcp.keys() {
        if let Some(id) = ws.tokens.get(name, env) {
            out.push((env.clone(), key.token(Kind::Mcp, name, env, &id)));
        }
    }
    if let Some(ag) = &ws.config.agent_gateway {
        for env in d.gateways.keys() {
            if let (Some(id), Some(url)) = (ws.tokens.get(name, env), env_url(env)) {
                out.push((url, ag.url.to_string().trim_end_matches('/').to_string()));
                out.push((env.clone(), key.token(Kind::Agent, name, env, &id)));
            }
        }
    }
    Ok(out)
}
