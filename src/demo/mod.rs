//! `mcp-hub demo`: the hub on loopback with its embedded default configuration (`conf/demo.toml`), a
//! built-in sample upstream MCP server and a sample model behind the agent gateway, plus copy-paste
//! commands that work as printed.

pub mod llm;
pub mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use secrecy::ExposeSecret;
use toml_edit::{DocumentMut, value};

use crate::ops::edit::devbox::{self, BindingSpec};
use crate::ops::edit::{self, Workspace, secret};
use crate::state::fsutil;
use crate::state::secrets::Secrets;

/// The embedded default configuration.
pub const DEMO_CONFIG: &str = include_str!("../../conf/demo.toml");
/// Devbox the demo creates.
pub const DEMO_DEVBOX: &str = "demo";
/// Port the demo prefers, so the URL stays the same between runs.
pub const DEMO_PORT: u16 = 8443;

/// What the demo set up.
#[derive(Debug)]
pub struct DemoSetup {
    /// The generated config file.
    pub config_file: PathBuf,
    /// Env lines for the devbox (`RL_MCP_URL`, tokens).
    pub env: Vec<(String, String)>,
    /// CA file to trust.
    pub ca_file: PathBuf,
    /// How to run this binary from a shell, as printed: `mcp-hub` if that is what `PATH` finds, else
    /// the binary's own path (a newcomer who ran `cargo run -- demo` has no `mcp-hub` on `PATH`).
    pub command: String,
}

/// `mcp-hub` if the first `mcp-hub` on `PATH` is this very binary, else this binary's path, quoted for
/// a POSIX shell when it needs to be.
fn own_command() -> String {
    let Ok(me) = std::env::current_exe().and_then(std::fs::canonicalize) else {
        return "mcp-hub".into();
    };
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("mcp-hub"))
            .find(|c| c.is_file())
            .and_then(|c| std::fs::canonicalize(c).ok())
    });
    if on_path.as_deref() == Some(me.as_path()) {
        return "mcp-hub".into();
    }
    shell_word(&me.to_string_lossy())
}

/// `s` as one POSIX shell word: as it is if it needs no quoting, else single-quoted.
fn shell_word(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Serve plain HTTP/1.1 and h2 on `listener`, each request answered by `handle`, until the task is
/// dropped: the loop both sample servers run.
pub(crate) async fn serve_http<F, Fut>(listener: tokio::net::TcpListener, handle: F)
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = http::Response<http_body_util::Full<bytes::Bytes>>>
        + Send
        + 'static,
{
    loop {
        let Ok((tcp, _peer)) = listener.accept().await else {
            continue;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let reply = handle(req);
                async move { Ok::<_, std::convert::Infallible>(reply.await) }
            });
            let _ =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
        });
    }
}

/// Bind the gateway: the requested address, else 127.0.0.1:8443, else any free loopback port.
///
/// # Errors
/// If no address can be bound.
pub async fn bind(listen: Option<SocketAddr>) -> anyhow::Result<tokio::net::TcpListener> {
    if let Some(a) = listen {
        return tokio::net::TcpListener::bind(a)
            .await
            .with_context(|| format!("binding {a}"));
    }
    match tokio::net::TcpListener::bind(("127.0.0.1", DEMO_PORT)).await {
        Ok(l) => Ok(l),
        Err(_) => tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding a loopback port"),
    }
}

fn random_secret() -> anyhow::Result<String> {
    let mut b = [0u8; 18];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    Ok(format!(
        "demo_gh_{}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    ))
}

/// The name clients use for the demo gateway: `localhost` on loopback. A DNS name, not `127.0.0.1`,
/// because the CA is name-constrained to the gateway host and some TLS stacks (Claude Code's among
/// them) reject CAs with IP-address name constraints.
pub fn gateway_host(gateway: SocketAddr) -> String {
    if gateway.ip().is_loopback() {
        "localhost".to_string()
    } else {
        gateway.ip().to_string()
    }
}

/// A demo directory from an older version may hold a CA constrained to another host; the demo owns
/// that directory, so the old CA is moved aside (never deleted) and a new one is made.
fn retire_stale_ca(dir: &Path, host: &str) -> anyhow::Result<()> {
    let ca = dir.join("state").join("ca");
    let recorded = std::fs::read_to_string(ca.join("ca.host")).ok();
    if let Some(old) = recorded.filter(|h| h.trim() != host) {
        let aside = dir
            .join("state")
            .join(format!("ca.replaced-{}", fsutil::now_ms()));
        std::fs::rename(&ca, &aside).with_context(|| format!("moving {} aside", ca.display()))?;
        eprintln!(
            "note: the demo's old CA (for {}) was moved to {}; trust the new one printed below",
            old.trim(),
            aside.display()
        );
    }
    Ok(())
}

/// Write the demo configuration into `dir` for a gateway on `gateway` and an upstream on `upstream`.
///
/// # Errors
/// File errors.
pub fn write_config(
    dir: &Path,
    gateway: SocketAddr,
    upstream: SocketAddr,
    model: SocketAddr,
) -> anyhow::Result<PathBuf> {
    let mut doc: DocumentMut = DEMO_CONFIG.parse().context("embedded demo config")?;
    doc["gateway"]["listen"] = value(gateway.to_string());
    doc["gateway"]["url"] = value(format!(
        "https://{}:{}/mcp",
        gateway_host(gateway),
        gateway.port()
    ));
    if let Some(c) = doc["mcp_configs"]
        .as_array_of_tables_mut()
        .and_then(|a| a.get_mut(0))
    {
        c["endpoint"] = value(format!("http://{upstream}/mcp"));
    }
    doc["agent_gateway"]["url"] = value(format!(
        "https://{}:{}/agents",
        gateway_host(gateway),
        gateway.port()
    ));
    if let Some(c) = doc["gateway_configs"]
        .as_array_of_tables_mut()
        .and_then(|a| a.get_mut(0))
    {
        c["endpoint"] = value(format!("http://{model}"));
    }
    let path = dir.join("hub.toml");
    fsutil::write_atomic(&path, doc.to_string().as_bytes(), 0o640)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// A demo secret: reuse the stored one so tokens and files stay stable between runs.
fn demo_secret(dir: &Path, name: &str) -> anyhow::Result<String> {
    let p = dir.join("state").join("secrets.toml");
    let s = Secrets::load(&p).map_err(|e| {
        anyhow::anyhow!(
            "{}",
            e.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        )
    })?;
    match s.map.get(name) {
        Some(v) => Ok(v.value.expose_secret().to_string()),
        None => random_secret(),
    }
}

/// The demo devbox's binding to the sample model.
fn model_binding() -> devbox::GatewaySpec {
    devbox::GatewaySpec {
        env_var: "ANTHROPIC".into(),
        gateway_config: "sample-anthropic".into(),
        secret: "ANTHROPIC_KEY".into(),
    }
}

/// Set everything up: sample upstream and model, config, secrets, devbox and tokens.
///
/// # Errors
/// File or validation errors.
pub async fn setup(dir: &Path, gateway: SocketAddr) -> anyhow::Result<DemoSetup> {
    fsutil::ensure_dir(dir, 0o700).with_context(|| format!("creating {}", dir.display()))?;
    retire_stale_ca(dir, &gateway_host(gateway))?;
    let secret = demo_secret(dir, "GITHUB_MCP_TOKEN")?;
    let model_key = demo_secret(dir, "ANTHROPIC_KEY")?;
    let upstream = upstream::spawn(&secret)
        .await
        .context("starting the sample upstream")?;
    let model = llm::spawn(&model_key)
        .await
        .context("starting the sample model")?;
    let config_file = write_config(dir, gateway, upstream, model)?;
    let mut ws = Workspace::load(&config_file)?;
    let _lock = edit::lock(ws.paths())?;
    for (name, value) in [("GITHUB_MCP_TOKEN", secret), ("ANTHROPIC_KEY", model_key)] {
        secret::Create {
            name: name.into(),
            replace: true,
            value: secret::Value(value),
        }
        .apply(&mut ws)?;
    }
    if ws.devboxes.get(DEMO_DEVBOX).is_none() {
        let b = BindingSpec {
            env_var: "GITHUB_MCP_SECRET".into(),
            mcp_config: "github".into(),
            secret: "GITHUB_MCP_TOKEN".into(),
        };
        devbox::Create {
            name: DEMO_DEVBOX.into(),
            addresses: Vec::new(),
            network_policy: Some("demo".into()),
            mcp: vec![b],
            gateway: vec![model_binding()],
        }
        .apply(&mut ws)?;
    } else {
        // A demo directory from an earlier run (maybe of an older version): bring it up to date.
        devbox::SetPolicy {
            name: DEMO_DEVBOX.into(),
            policy: Some("demo".into()),
        }
        .apply(&mut ws)?;
        if ws
            .devboxes
            .get(DEMO_DEVBOX)
            .is_some_and(|d| !d.gateways.contains_key("ANTHROPIC"))
        {
            devbox::Bind {
                name: DEMO_DEVBOX.into(),
                mcp: Vec::new(),
                gateway: vec![model_binding()],
            }
            .apply(&mut ws)?;
        }
        for env_var in ["GITHUB_MCP_SECRET", "ANTHROPIC"] {
            if ws.tokens.get(DEMO_DEVBOX, env_var).is_none() {
                devbox::Binding {
                    name: DEMO_DEVBOX.into(),
                    env_var: env_var.into(),
                }
                .rotate(&mut ws)?;
            }
        }
    }
    let env = devbox::env(&ws, DEMO_DEVBOX)?;
    let ca_file = crate::tls::ca::cert_path(&ws.paths().ca_dir);
    Ok(DemoSetup {
        config_file,
        env,
        ca_file,
        command: own_command(),
    })
}

/// The text `mcp-hub demo` prints.
pub fn instructions(s: &DemoSetup) -> String {
    let mut out = String::from(
        "mcp-hub demo: the MCP gateway is running with a sample GitHub-like MCP server behind it, and the \
         agent gateway with a sample model (a fixture speaking the Anthropic Messages API, canned replies).\n\n",
    );
    out.push_str(
        "# The devbox's environment (what `devbox env demo` prints), and the CA it must trust:\n",
    );
    for (k, v) in &s.env {
        out.push_str(&format!("export {k}={v}\n"));
    }
    out.push_str(&format!("export CA={}\n\n", s.ca_file.display()));
    let curl = "curl -sS --cacert \"$CA\" -H \"Authorization: Bearer $GITHUB_MCP_SECRET\" -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream'";
    out.push_str("# List the tools this devbox may use (github.create_issue and github.delete_repo are hidden by allowed_tools):\n");
    out.push_str(&format!(
        "{curl} -d '{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}}' \"$RL_MCP_URL\"\n\n"
    ));
    out.push_str(
        "# Call an allowed tool, then a hidden one (answered by the hub as an unknown tool):\n",
    );
    out.push_str(&format!("{curl} -d '{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{{\"name\":\"github.get_issue\",\"arguments\":{{\"number\":1}}}}}}' \"$RL_MCP_URL\"\n"));
    out.push_str(&format!("{curl} -d '{{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{{\"name\":\"github.delete_repo\",\"arguments\":{{}}}}}}' \"$RL_MCP_URL\"\n\n"));
    out.push_str(
        "# Register it with Claude Code (start claude with the same NODE_EXTRA_CA_CERTS):\n",
    );
    out.push_str("export NODE_EXTRA_CA_CERTS=\"$CA\"\n");
    out.push_str("claude mcp add github --transport http \"$RL_MCP_URL\" --header \"Authorization: Bearer $GITHUB_MCP_SECRET\"\n\n");
    out.push_str("# Call the model through the agent gateway: the devbox holds only $ANTHROPIC, a hub token; the hub\n# injects the sample model's real key:\n");
    out.push_str("curl -sS --cacert \"$CA\" \"$ANTHROPIC_URL/v1/messages\" -H \"x-api-key: $ANTHROPIC\" -H 'anthropic-version: 2023-06-01' -H 'Content-Type: application/json' -d '{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":64,\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]}'\n\n");
    out.push_str("# A whole agent turn, model call and MCP tool call both through the hub (after the `claude mcp add` above):\n");
    out.push_str("ANTHROPIC_BASE_URL=\"$ANTHROPIC_URL\" ANTHROPIC_API_KEY=\"$ANTHROPIC\" CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1 \\\n  claude -p 'What does issue 1 say?' --allowedTools mcp__github__github_get_issue\n\n");
    out.push_str(&format!(
        "# Manage it like a real deployment, while it runs:\n{} --config {} devbox list\n\nPress Ctrl-C to stop.\n",
        s.command,
        shell_word(&s.config_file.to_string_lossy())
    ));
    out
}

/// Default demo directory: `$TMPDIR/mcp-hub-demo`, kept between runs so the CA stays the same.
pub fn default_dir() -> PathBuf {
    std::env::temp_dir().join("mcp-hub-demo")
}
