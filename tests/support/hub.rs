//! An in-process hub on 127.0.0.1:0 with its own temporary config and state, shut down on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use mcp_hub::ops::edit::devbox::{self, BindingSpec};
use mcp_hub::ops::edit::{self, Workspace, mcp_config, secret};
use tokio::sync::oneshot;

use super::client::Client;

pub(crate) struct Hub {
    pub(crate) addr: SocketAddr,
    pub(crate) url: String,
    _dir: tempfile::TempDir,
    pub(crate) config_file: PathBuf,
    pub(crate) ca_file: PathBuf,
    /// (transparent, explicit, DNS) egress listener addresses, when configured.
    pub(crate) egress: (Option<SocketAddr>, Option<SocketAddr>, Option<SocketAddr>),
    state: std::sync::Arc<mcp_hub::runtime::Live>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}

/// `(name, endpoint, allowed_tools)`.
pub(crate) type ConfigSpec<'a> = (&'a str, &'a str, &'a [&'a str]);

impl Hub {
    /// A hub with these MCP configs and extra `[gateway]` lines (and, after them, any other sections;
    /// `{port}` in them is the gateway's port).
    pub(crate) async fn start_with(configs: &[ConfigSpec<'_>], gateway_extra: &str) -> Self {
        mcp_hub::ops::start::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("https://127.0.0.1:{}/mcp", addr.port());
        let config_file = dir.path().join("hub.toml");
        let gateway_extra = gateway_extra.replace("{port}", &addr.port().to_string());
        let text = format!(
            "version = 1\n[hub]\nstate_dir = \"state\"\n[gateway]\nlisten = \"{addr}\"\nurl = \"{url}\"\n{gateway_extra}\n"
        );
        std::fs::write(&config_file, text).unwrap();
        {
            let mut ws = Workspace::load(&config_file).unwrap();
            let _l = edit::lock(ws.paths()).unwrap();
            for (name, endpoint, tools) in configs {
                mcp_config::Create {
                    name: name.to_string(),
                    endpoint: endpoint.to_string(),
                    allowed_tools: tools.iter().map(|s| s.to_string()).collect(),
                    description: None,
                    credential_header: None,
                    credential_value: None,
                    pin_tools: false,
                }
                .apply(&mut ws)
                .unwrap();
            }
        }
        let prepared = mcp_hub::ops::start::prepare(&config_file).unwrap();
        let egress = mcp_hub::ops::start::bind_egress(&prepared).await.unwrap();
        let egress_addrs = (
            egress.transparent.as_ref().map(|l| l.local_addr().unwrap()),
            egress.explicit.as_ref().map(|l| l.local_addr().unwrap()),
            egress.dns.as_ref().map(|d| d.0.local_addr().unwrap()),
        );
        let ca_file = prepared.ca_file.clone();
        let state = prepared.state.clone();
        let (tx, rx) = oneshot::channel();
        let (_hup_tx, hup_rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let _keep = _hup_tx;
            mcp_hub::ops::start::serve(
                prepared,
                listener,
                egress,
                Duration::from_secs(1),
                hup_rx,
                async {
                    let _ = rx.await;
                },
            )
            .await;
        });
        Self {
            addr,
            url,
            _dir: dir,
            config_file,
            ca_file,
            egress: egress_addrs,
            state,
            shutdown: Some(tx),
        }
    }

    pub(crate) async fn start(configs: &[ConfigSpec<'_>]) -> Self {
        Self::start_with(configs, "").await
    }

    /// Apply setup edits now instead of waiting for the file watcher (the `live` tests cover that).
    pub(crate) fn sync(&self) {
        mcp_hub::ops::reload::reload_now(&self.config_file, &self.state).unwrap();
    }

    pub(crate) fn workspace(&self) -> Workspace {
        Workspace::load(&self.config_file).unwrap()
    }

    /// Run `f` on the workspace under the state lock, as the CLI does. Nothing is reloaded: call
    /// `sync`, or let the running hub's watcher notice (the `live` tests time that).
    pub(crate) fn edit<T>(&self, f: impl FnOnce(&mut Workspace) -> T) -> T {
        let mut ws = self.workspace();
        let _l = edit::lock(ws.paths()).unwrap();
        f(&mut ws)
    }

    /// Store a secret.
    pub(crate) fn secret(&self, name: &str, value: &str) {
        self.edit(|ws| {
            secret::Create {
                name: name.into(),
                replace: true,
                value: secret::Value(value.into()),
            }
            .apply(ws)
            .unwrap()
        });
        self.sync();
    }

    /// Create a devbox with a network policy; returns env var -> token.
    pub(crate) fn devbox_with_policy(
        &self,
        name: &str,
        addresses: &[&str],
        policy: &str,
        bindings: &[&str],
    ) -> std::collections::HashMap<String, String> {
        self.create_devbox(name, addresses, Some(policy), bindings, &[])
    }

    /// Create a devbox with agent-gateway bindings (`ENV=gateway_config:secret`) and a policy; returns
    /// its whole environment (`ENV_URL` and `ENV` per binding).
    pub(crate) fn devbox_with_gateways(
        &self,
        name: &str,
        addresses: &[&str],
        policy: &str,
        gateways: &[&str],
    ) -> std::collections::HashMap<String, String> {
        self.create_devbox(name, addresses, Some(policy), &[], gateways)
    }

    /// Create a devbox with `ENV=config:secret` bindings; returns env var -> token.
    pub(crate) fn devbox(
        &self,
        name: &str,
        addresses: &[&str],
        bindings: &[&str],
    ) -> std::collections::HashMap<String, String> {
        self.create_devbox(name, addresses, None, bindings, &[])
    }

    fn create_devbox(
        &self,
        name: &str,
        addresses: &[&str],
        policy: Option<&str>,
        bindings: &[&str],
        gateways: &[&str],
    ) -> std::collections::HashMap<String, String> {
        let env = self.edit(|ws| {
            devbox::Create {
                name: name.into(),
                addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
                network_policy: policy.map(str::to_string),
                mcp: bindings
                    .iter()
                    .map(|b| b.parse::<BindingSpec>().unwrap())
                    .collect(),
                gateway: gateways.iter().map(|b| b.parse().unwrap()).collect(),
            }
            .apply(ws)
            .unwrap()
            .env
        });
        self.sync();
        env.into_iter().collect()
    }

    /// Four loops run `probe` until ten edits, each applied with `edit` and reloaded 50 ms apart, are
    /// done; returns how many probes succeeded and failed.
    pub(crate) async fn edits_under_load<P, Fut>(
        &self,
        probe: P,
        mut edit: impl FnMut(&mut Workspace, usize),
    ) -> (usize, usize)
    where
        P: Fn() -> Fut + Clone + Send + 'static,
        Fut: std::future::Future<Output = bool> + Send,
    {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut load = Vec::new();
        for _ in 0..4 {
            let (probe, stop) = (probe.clone(), stop.clone());
            load.push(tokio::spawn(async move {
                let (mut ok, mut failed) = (0, 0);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if probe().await {
                        ok += 1;
                    } else {
                        failed += 1;
                    }
                }
                (ok, failed)
            }));
        }
        for i in 0..10 {
            self.edit(|ws| edit(ws, i));
            self.sync();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (mut ok, mut failed) = (0, 0);
        for l in load {
            let (o, f) = l.await.unwrap();
            ok += o;
            failed += f;
        }
        (ok, failed)
    }

    pub(crate) fn client(&self) -> Client {
        Client::new(&self.url, &self.ca_file, false)
    }

    pub(crate) fn client_h2(&self) -> Client {
        Client::new(&self.url, &self.ca_file, true)
    }

    /// Wait (up to 2 s) until `f` holds; returns how long it took.
    pub(crate) async fn eventually<F, Fut>(mut f: F) -> Duration
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            if f().await {
                return start.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("condition not met within 2 s");
    }
}
