//! Command-line interface: clap definitions and one handler per subcommand.

use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;

use mcp_hub::config::ConfigError;
use mcp_hub::ops::edit::{
    self, Workspace, devbox, gateway_config, mcp_config, network_policy, secret, tools,
};
use mcp_hub::ops::socket::{self, Outcome, Request};
use mcp_hub::ops::start;
use mcp_hub::runtime::Snapshot;

/// MCP gateway for sandboxed agent devboxes.
#[derive(Debug, Parser)]
#[command(name = "mcp-hub", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// The hub configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "MCP_HUB_CONFIG",
        default_value = "/etc/mcp-hub/hub.toml"
    )]
    pub(crate) config: PathBuf,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the service.
    Run {
        /// Seconds in-flight requests get to finish after SIGTERM.
        #[arg(long, default_value_t = 30)]
        grace_secs: u64,
    },
    /// Run the hub on loopback with its embedded default config and a sample upstream MCP server.
    Demo {
        /// Where the demo keeps its config and state (kept between runs).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Gateway address (default 127.0.0.1:8443, or a free port if that is taken).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Write a minimal valid config file at --config (never replaces one).
    Init(mcp_hub::ops::init::InitArgs),
    /// Validate the configuration and state exactly as start-up does.
    Check,
    /// Print the nftables ruleset that routes devbox traffic through the hub (pipe into `nft -f -`).
    Firewall,
    /// Serve only the demo's sample upstream MCP server (for smoke tests and benchmarks).
    SampleUpstream {
        /// Address to listen on (plain HTTP).
        #[arg(long, default_value = "127.0.0.1:3900")]
        listen: SocketAddr,
        /// The bearer secret it requires.
        #[arg(long, env = "MCP_HUB_SAMPLE_SECRET", hide_env_values = true)]
        secret: String,
    },
    /// Serve only the demo's sample model, a fixture speaking the Anthropic Messages API with canned
    /// replies (for smoke tests and benchmarks).
    SampleModel {
        /// Address to listen on (plain HTTP).
        #[arg(long, default_value = "127.0.0.1:3901")]
        listen: SocketAddr,
        /// The x-api-key it requires.
        #[arg(long, env = "MCP_HUB_SAMPLE_KEY", hide_env_values = true)]
        key: String,
    },
    /// The hub's certificate authority.
    #[command(subcommand)]
    Ca(CaCmd),
    /// Upstream MCP server definitions.
    #[command(subcommand, name = "mcp-config")]
    McpConfig(McpConfigCmd),
    /// REST APIs behind the agent gateway (`[[gateway_configs]]`; `anthropic` and `openai` are built in).
    #[command(subcommand, name = "gateway-config")]
    GatewayConfig(GatewayConfigCmd),
    /// Secrets kept on the host (values are read from stdin, never printed).
    #[command(subcommand)]
    Secret(SecretCmd),
    /// Devboxes, their MCP and agent-gateway bindings and tokens.
    #[command(subcommand)]
    Devbox(DevboxCmd),
    /// Network policies devboxes name (`[[network_policies]]` in hub.toml).
    #[command(subcommand, name = "network-policy")]
    NetworkPolicy(NetworkPolicyCmd),
    /// Tool pinning: review what upstreams list and approve tool definitions (`pin_tools`).
    #[command(subcommand)]
    Tools(ToolsCmd),
    /// What the running service serves (through its admin socket), or what it would serve.
    Status,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ToolsCmd {
    /// Every tool seen or approved for a config: whether allowed_tools admits it, its state
    /// (approved, new, changed, removed), when first and last seen, and what changed.
    List(tools::List),
    /// Approve the current definitions of tools (or --all).
    Approve(tools::Names),
    /// Withdraw approvals (or --all).
    Revoke(tools::Names),
    /// List the upstream now, with a stored secret, and record what it lists.
    Refresh(tools::Refresh),
}

#[derive(Debug, Subcommand)]
pub(crate) enum NetworkPolicyCmd {
    /// List policies.
    List,
    /// Create a policy.
    Create(network_policy::Create),
    /// Change some fields of a policy.
    Update(network_policy::Update),
    /// Delete a policy (refused while devboxes use it, unless --force).
    Delete(edit::Delete),
}

#[derive(Debug, Subcommand)]
pub(crate) enum CaCmd {
    /// Create the CA for the gateway host (never replaces an existing one).
    Init,
    /// Print the CA certificate (PEM) for devboxes to trust.
    Print,
}

#[derive(Debug, Subcommand)]
pub(crate) enum McpConfigCmd {
    /// Define an upstream MCP server.
    Create(mcp_config::Create),
    /// List configs.
    List,
    /// Show one config.
    Get {
        /// Name or id.
        name: String,
    },
    /// Change allowed tools, description or endpoint.
    Update(mcp_config::Update),
    /// Delete a config (refused while a devbox uses it, unless --force).
    Delete(edit::Delete),
}

#[derive(Debug, Subcommand)]
pub(crate) enum GatewayConfigCmd {
    /// Define a REST API behind the agent gateway.
    Create(gateway_config::Create),
    /// List configs (the system configs first).
    List,
    /// Show one config.
    Get {
        /// Name or id.
        name: String,
    },
    /// Change a config's fields (system configs cannot be changed).
    Update(gateway_config::Update),
    /// Delete a config (refused while a devbox uses it, unless --force).
    Delete(edit::Delete),
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretCmd {
    /// Store a secret; the value is read from stdin.
    Create(secret::Create),
    /// List secret names (never values).
    List,
    /// Delete a secret (refused while bound, unless --force).
    Delete(edit::Delete),
}

#[derive(Debug, Subcommand)]
pub(crate) enum DevboxCmd {
    /// Create a devbox with MCP and agent-gateway bindings; prints its environment.
    Create(devbox::Create),
    /// Set (or with no POLICY, clear) a devbox's network policy.
    SetPolicy(devbox::SetPolicy),
    /// Add MCP or agent-gateway bindings to a devbox.
    Bind(devbox::Bind),
    /// Set or lift an agent-gateway binding's limits.
    Limit(devbox::Limit),
    /// Remove one binding and its token.
    Unbind(devbox::Binding),
    /// List devboxes and their bindings.
    List,
    /// Print RL_MCP_URL, one line per MCP token, and ENV_URL and ENV per gateway binding.
    Env(devbox::Named),
    /// Revoke a binding's token (or all of the devbox's tokens).
    Revoke(devbox::Revoke),
    /// Issue a new token for one binding; the old one stops working.
    Rotate(devbox::Binding),
    /// Delete a devbox, its bindings and tokens.
    Delete(devbox::Named),
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn print_env(env: &[(String, String)], as_json: bool) {
    if as_json {
        print_json(&json!(
            env.iter()
                .cloned()
                .collect::<std::collections::BTreeMap<_, _>>()
        ));
    } else {
        for (k, v) in env {
            println!("{k}={v}");
        }
    }
}

/// Dispatch a parsed command.
///
/// # Errors
/// Any failure; `main` maps it to an exit code.
pub(crate) async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let cfg = cli.config.clone();
    match cli.command {
        Command::Run { grace_secs } => run(cfg, Duration::from_secs(grace_secs)).await,
        Command::Demo { dir, listen } => {
            demo(dir.unwrap_or_else(mcp_hub::demo::default_dir), listen).await
        }
        Command::Init(a) => {
            mcp_hub::ops::init::init(&cfg, &a)?;
            if cli.json {
                print_json(&json!({"ok": true, "config": cfg}));
            } else {
                println!(
                    "wrote {}; next: mcp-hub --config {} mcp-config create ...",
                    cfg.display(),
                    cfg.display()
                );
            }
            Ok(())
        }
        Command::Check => {
            let s = Snapshot::load(&cfg)?;
            if cli.json {
                print_json(
                    &json!({"ok": true, "mcp_configs": s.config.mcp_configs.len(), "devboxes": s.devboxes.list.len(), "live_tokens": s.live_bindings()}),
                );
            } else {
                println!(
                    "{}: ok ({} mcp_configs, {} devboxes, {} live tokens)",
                    cfg.display(),
                    s.config.mcp_configs.len(),
                    s.devboxes.list.len(),
                    s.live_bindings()
                );
            }
            Ok(())
        }
        Command::SampleModel { listen, key } => {
            let l = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            println!("sample model (fixture) on http://{}", l.local_addr()?);
            mcp_hub::demo::llm::SampleModel::new(&key).serve(l).await;
            Ok(())
        }
        Command::SampleUpstream { listen, secret } => {
            let l = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            println!(
                "sample upstream MCP server on http://{}/mcp",
                l.local_addr()?
            );
            mcp_hub::demo::upstream::SampleServer::new(&secret)
                .serve(l)
                .await;
            Ok(())
        }
        Command::Firewall => {
            let c = mcp_hub::config::load(&cfg)?;
            print!("{}", mcp_hub::egress::firewall::ruleset(&c)?);
            Ok(())
        }
        Command::Ca(c) => ca(&cfg, c),
        Command::McpConfig(c) => mcp_config(&cfg, c, cli.json),
        Command::GatewayConfig(c) => gateway_config(&cfg, c, cli.json),
        Command::Secret(c) => secret(&cfg, c, cli.json),
        Command::Devbox(c) => devbox(&cfg, c, cli.json),
        Command::Status => submit(&cfg, Request::Status, cli.json),
        Command::Tools(c) => tools_cmd(&cfg, c, cli.json).await,
        Command::NetworkPolicy(c) => network_policy(&cfg, c, cli.json),
    }
}

fn ca(cfg: &std::path::Path, c: CaCmd) -> anyhow::Result<()> {
    let config = mcp_hub::config::load(cfg)?;
    let dir = &config.paths.ca_dir;
    match c {
        CaCmd::Init => {
            mcp_hub::state::init(&config.paths)
                .with_context(|| format!("creating {}", config.paths.state_dir.display()))?;
            let created = mcp_hub::tls::ca::init(dir, &config.hub_hosts())?;
            let path = mcp_hub::tls::ca::cert_path(dir);
            if created {
                println!(
                    "created CA for {} at {}",
                    config.gateway.host,
                    path.display()
                );
            } else {
                mcp_hub::tls::ca::load(dir)?.check_hosts(dir, &config.hub_hosts())?;
                println!("CA already exists at {} (left unchanged)", path.display());
            }
            Ok(())
        }
        CaCmd::Print => {
            let ca = mcp_hub::tls::ca::load(dir)?;
            print!("{}", ca.cert_pem);
            Ok(())
        }
    }
}

/// Run a mutating operation: through the running service's admin socket when it is there (applied and
/// reloaded at once), otherwise on the files directly. Same code (`socket::apply`) either way.
fn submit(cfg: &std::path::Path, req: Request, as_json: bool) -> anyhow::Result<()> {
    let config = mcp_hub::config::load(cfg)?;
    let reply = match config
        .admin_socket
        .as_deref()
        .and_then(|p| socket::call(p, &req))
    {
        Some(r) => r.context("talking to the running mcp-hub over its admin socket")?,
        None => socket::apply(cfg, req),
    };
    print_reply(reply, as_json)
}

/// Print a reply from the service (or from applying a request to the files): its environment lines,
/// its data (with `--json`), or its message; a refusal becomes the error with its exit code.
fn print_reply(reply: socket::Reply, as_json: bool) -> anyhow::Result<()> {
    match reply.outcome {
        Outcome::Ok if !reply.env.is_empty() => print_env(&reply.env, as_json),
        Outcome::Ok if as_json => match reply.data {
            Some(d) => print_json(&d),
            None => print_json(&json!({"ok": true, "message": reply.message})),
        },
        // A multi-line message (`tools list`) ends with its own newline.
        Outcome::Ok if reply.message.ends_with('\n') => print!("{}", reply.message),
        Outcome::Ok => println!("{}", reply.message),
        Outcome::Invalid => return Err(ConfigError::Invalid(reply.issues).into()),
        Outcome::BadInput => return Err(edit::ManageError::BadInput(reply.message).into()),
        Outcome::Failed => anyhow::bail!("{}", reply.message),
    }
    Ok(())
}

/// `tools`: through the running service when its socket answers (it knows what it has seen since the
/// last write, and lists upstreams with its own client), otherwise on the files.
async fn tools_cmd(cfg: &std::path::Path, c: ToolsCmd, as_json: bool) -> anyhow::Result<()> {
    let req = match c {
        ToolsCmd::List(a) => Request::ToolsList(a),
        ToolsCmd::Approve(a) => Request::ToolsApprove(a),
        ToolsCmd::Revoke(a) => Request::ToolsRevoke(a),
        ToolsCmd::Refresh(a) => Request::ToolsRefresh(a),
    };
    let config = mcp_hub::config::load(cfg)?;
    let running = config
        .admin_socket
        .as_deref()
        .and_then(|p| socket::call(p, &req));
    let reply = match (running, req) {
        (Some(r), _) => r.context("talking to the running mcp-hub over its admin socket")?,
        (None, Request::ToolsList(a)) => {
            let snap = Snapshot::load(cfg)?;
            let seen = mcp_hub::state::tools::Seen::load(&snap.config.paths.tools_seen_file)
                .map_err(ConfigError::Invalid)?;
            socket::tools_list(&a, &snap.config, &snap.approvals, &seen)
        }
        (None, Request::ToolsRefresh(a)) => {
            let snap = Snapshot::load(cfg)?;
            let _lock = edit::lock(&snap.config.paths)?;
            let pins = mcp_hub::runtime::pins::Pins::load(
                &snap.config.paths.tools_seen_file,
                snap.approvals.clone(),
            );
            socket::tools_refresh(&a, cfg, &pins, None).await
        }
        (None, req) => socket::apply(cfg, req),
    };
    print_reply(reply, as_json)
}

fn mcp_config(cfg: &std::path::Path, c: McpConfigCmd, as_json: bool) -> anyhow::Result<()> {
    let show = |c: &mcp_hub::config::McpConfig| {
        json!({"id": c.id, "name": c.name, "endpoint": c.endpoint.to_string(), "allowed_tools": c.allowed_tools.patterns(),
               "description": c.description, "create_time_ms": c.create_time_ms, "credential_header": c.credential.header.as_str(),
               "pin_tools": c.pin_tools})
    };
    let req = match c {
        McpConfigCmd::List => {
            let config = mcp_hub::config::load(cfg)?;
            if as_json {
                print_json(&json!(
                    config
                        .mcp_configs
                        .iter()
                        .map(|c| show(c))
                        .collect::<Vec<_>>()
                ));
            } else {
                for c in &config.mcp_configs {
                    println!(
                        "{}\t{}\t{}\t{}",
                        c.id,
                        c.name,
                        c.endpoint,
                        c.allowed_tools.patterns().join(",")
                    );
                }
            }
            return Ok(());
        }
        McpConfigCmd::Get { name } => {
            let config = mcp_hub::config::load(cfg)?;
            let c = config.mcp_config(&name).ok_or_else(|| {
                edit::ManageError::NotFound(format!("no mcp_config named {name:?}"))
            })?;
            print_json(&show(c));
            return Ok(());
        }
        McpConfigCmd::Create(a) => Request::McpConfigCreate(a),
        McpConfigCmd::Update(a) => Request::McpConfigUpdate(a),
        McpConfigCmd::Delete(a) => Request::McpConfigDelete(a),
    };
    submit(cfg, req, as_json)
}

fn gateway_config(cfg: &std::path::Path, c: GatewayConfigCmd, as_json: bool) -> anyhow::Result<()> {
    let show = |c: &mcp_hub::config::agent::GatewayConfig| {
        let mut auth = json!({"type": c.auth.kind()});
        if let Some(k) = c.auth.key() {
            auth["key"] = json!(k);
        }
        json!({"id": c.id, "name": c.name, "endpoint": c.endpoint.to_string(), "auth_mechanism": auth,
               "description": c.description, "create_time_ms": c.create_time_ms, "system": c.system,
               "allowed_paths": c.allowed_paths.as_ref().map(|p| p.patterns.clone()),
               "allowed_models": c.allowed_models.as_ref().map(|m| m.patterns().to_vec())})
    };
    let req = match c {
        GatewayConfigCmd::List => {
            let config = mcp_hub::config::load(cfg)?;
            if as_json {
                let rows: Vec<_> = config.gateway_configs.iter().map(|c| show(c)).collect();
                print_json(&json!(rows));
            } else {
                for c in &config.gateway_configs {
                    println!(
                        "{}\t{}\t{}\t{}{}{}",
                        c.id,
                        c.name,
                        c.endpoint,
                        c.auth.kind(),
                        c.auth.key().map(|k| format!(" {k}")).unwrap_or_default(),
                        if c.system { "\tsystem" } else { "" }
                    );
                }
            }
            return Ok(());
        }
        GatewayConfigCmd::Get { name } => {
            let config = mcp_hub::config::load(cfg)?;
            let c = config.gateway_config(&name).ok_or_else(|| {
                edit::ManageError::NotFound(format!("no gateway_config named {name:?}"))
            })?;
            print_json(&show(c));
            return Ok(());
        }
        GatewayConfigCmd::Create(a) => Request::GatewayConfigCreate(a),
        GatewayConfigCmd::Update(a) => Request::GatewayConfigUpdate(a),
        GatewayConfigCmd::Delete(a) => Request::GatewayConfigDelete(a),
    };
    submit(cfg, req, as_json)
}

fn secret(cfg: &std::path::Path, c: SecretCmd, as_json: bool) -> anyhow::Result<()> {
    let req = match c {
        SecretCmd::List => {
            let config = mcp_hub::config::load(cfg)?;
            let secrets = mcp_hub::state::secrets::Secrets::load(&config.paths.secrets_file)
                .map_err(ConfigError::Invalid)?;
            if as_json {
                print_json(&json!(
                    secrets
                        .map
                        .iter()
                        .map(|(n, s)| json!({"name": n, "create_time_ms": s.create_time_ms}))
                        .collect::<Vec<_>>()
                ));
            } else {
                for n in secrets.map.keys() {
                    println!("{n}");
                }
            }
            return Ok(());
        }
        SecretCmd::Create(mut a) => {
            std::io::stdin()
                .read_to_string(&mut a.value.0)
                .context("reading the secret value from stdin")?;
            Request::SecretCreate(a)
        }
        SecretCmd::Delete(a) => Request::SecretDelete(a),
    };
    submit(cfg, req, as_json)
}

fn network_policy(cfg: &std::path::Path, c: NetworkPolicyCmd, as_json: bool) -> anyhow::Result<()> {
    let req = match c {
        NetworkPolicyCmd::List => {
            let config = mcp_hub::config::load(cfg)?;
            let rows: Vec<_> = config
                .network_policies
                .iter()
                .map(|p| {
                    json!({"name": p.name, "description": p.description, "allow_all": p.allow_all,
                           "allowed_hostnames": p.allowed_hostnames.iter().map(|h| format!("{h:?}")).collect::<Vec<_>>(),
                           "allow_devbox_to_devbox": p.allow_devbox_to_devbox, "allow_mcp_gateway": p.allow_mcp_gateway,
                           "allow_agent_gateway": p.allow_agent_gateway})
                })
                .collect();
            if as_json {
                print_json(&json!(rows));
            } else {
                for p in &config.network_policies {
                    let flags: Vec<&str> = [
                        (p.allow_all, "allow_all"),
                        (p.allow_devbox_to_devbox, "devbox_to_devbox"),
                        (p.allow_mcp_gateway, "mcp_gateway"),
                        (p.allow_agent_gateway, "agent_gateway"),
                    ]
                    .into_iter()
                    .filter_map(|(on, n)| on.then_some(n))
                    .collect();
                    println!(
                        "{}\t{} hostname pattern(s)\t{}",
                        p.name,
                        p.allowed_hostnames.len(),
                        flags.join(",")
                    );
                }
            }
            return Ok(());
        }
        NetworkPolicyCmd::Create(a) => Request::NetworkPolicyCreate(a),
        NetworkPolicyCmd::Update(a) => Request::NetworkPolicyUpdate(a),
        NetworkPolicyCmd::Delete(a) => Request::NetworkPolicyDelete(a),
    };
    submit(cfg, req, as_json)
}

fn devbox(cfg: &std::path::Path, c: DevboxCmd, as_json: bool) -> anyhow::Result<()> {
    let req = match c {
        DevboxCmd::List => {
            let ws = Workspace::load(cfg)?;
            let state = |d: &str, e: &str| {
                if ws.tokens.get(d, e).is_some() {
                    "active"
                } else {
                    "revoked"
                }
            };
            if as_json {
                let rows: Vec<_> = ws
                    .devboxes
                    .list
                    .iter()
                    .map(|d| {
                        json!({"name": d.name, "addresses": d.addresses, "create_time_ms": d.create_time_ms, "network_policy": d.network_policy,
                               "mcp": d.mcp.iter().map(|(e, b)| (e.clone(), json!({"mcp_config": b.mcp_config, "secret": b.secret, "token": state(&d.name, e)}))).collect::<serde_json::Map<_, _>>(),
                               "gateways": d.gateways.iter().map(|(e, b)| (e.clone(), json!({"gateway_config": b.gateway_config, "secret": b.secret, "token": state(&d.name, e),
                                   "max_requests_per_minute": b.max_requests_per_minute, "max_tokens_per_day": b.max_tokens_per_day}))).collect::<serde_json::Map<_, _>>()})
                    })
                    .collect();
                print_json(&json!(rows));
            } else {
                for d in &ws.devboxes.list {
                    let addrs: Vec<String> = d.addresses.iter().map(ToString::to_string).collect();
                    let addrs = if addrs.is_empty() {
                        "any address".to_string()
                    } else {
                        addrs.join(",")
                    };
                    println!(
                        "{}\t{addrs}\tpolicy {}",
                        d.name,
                        d.network_policy.as_deref().unwrap_or("(none)")
                    );
                    for (e, b) in &d.mcp {
                        println!(
                            "  {e} -> {} (secret {}) token {}",
                            b.mcp_config,
                            b.secret,
                            state(&d.name, e)
                        );
                    }
                    for (e, b) in &d.gateways {
                        let limits: Vec<String> = [
                            b.max_requests_per_minute.map(|v| format!("{v}/min")),
                            b.max_tokens_per_day.map(|v| format!("{v} tokens/day")),
                        ]
                        .into_iter()
                        .flatten()
                        .collect();
                        println!(
                            "  {e} -> gateway {} (secret {}) token {}{}",
                            b.gateway_config,
                            b.secret,
                            state(&d.name, e),
                            if limits.is_empty() {
                                String::new()
                            } else {
                                format!(" limits {}", limits.join(", "))
                            }
                        );
                    }
                }
            }
            return Ok(());
        }
        DevboxCmd::Create(a) => Request::DevboxCreate(a),
        DevboxCmd::Bind(a) => Request::DevboxBind(a),
        DevboxCmd::Unbind(a) => Request::DevboxUnbind(a),
        DevboxCmd::SetPolicy(a) => Request::DevboxSetPolicy(a),
        DevboxCmd::Limit(a) => Request::DevboxLimit(a),
        DevboxCmd::Env(a) => Request::DevboxEnv(a),
        DevboxCmd::Revoke(a) => Request::DevboxRevoke(a),
        DevboxCmd::Rotate(a) => Request::DevboxRotate(a),
        DevboxCmd::Delete(a) => Request::DevboxDelete(a),
    };
    submit(cfg, req, as_json)
}

/// Signals: SIGTERM/SIGINT start the drain (a second SIGINT exits at once); SIGHUP reloads.
fn signals() -> anyhow::Result<(
    tokio::sync::mpsc::Receiver<()>,
    impl std::future::Future<Output = ()>,
)> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading");
            let _ = tx.try_send(());
        }
    });
    let shutdown = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining (press Ctrl-C again to exit now)"),
        }
        tokio::spawn(async move {
            if int.recv().await.is_some() {
                tracing::warn!("Second SIGINT: exiting now");
                std::process::exit(130);
            }
        });
    };
    Ok((rx, shutdown))
}

async fn run(cfg: PathBuf, grace: Duration) -> anyhow::Result<()> {
    let prepared = start::prepare(&cfg)?;
    let listen = prepared.state.load().config.gateway.listen;
    let listener = start::bind(listen).await?;
    let egress = start::bind_egress(&prepared).await?;
    let (hup, shutdown) = signals()?;
    tracing::info!(listen = %listener.local_addr()?, url = %prepared.state.load().config.gateway.url, "mcp-hub gateway ready");
    start::serve(prepared, listener, egress, grace, hup, shutdown).await;
    Ok(())
}

async fn demo(dir: PathBuf, listen: Option<SocketAddr>) -> anyhow::Result<()> {
    let listener = mcp_hub::demo::bind(listen).await?;
    let addr = listener.local_addr()?;
    let setup = mcp_hub::demo::setup(&dir, addr).await?;
    let prepared = start::prepare(&setup.config_file)?;
    let (hup, shutdown) = signals()?;
    println!("{}", mcp_hub::demo::instructions(&setup));
    start::serve(
        prepared,
        listener,
        start::EgressListeners::default(),
        Duration::from_secs(5),
        hup,
        shutdown,
    )
    .await;
    Ok(())
}
