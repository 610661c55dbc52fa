//! The binary as systemd runs it: sd_notify readiness, SIGHUP reload (good and bad), metrics and health
//! on the admin listener, and SIGTERM draining an in-flight request.

use std::process::Stdio;
use std::time::Duration;

use http::StatusCode;
use serde_json::json;
use tokio::net::UnixDatagram;
use tokio::process::Command;

use crate::support::client::Client;
use crate::support::{BIN, Upstream, cli};

/// `N` distinct free loopback ports: every probe listener is held until all are chosen, so two calls
/// cannot hand out the same port.
fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<_> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| held[i].local_addr().unwrap().port())
}

async fn recv(sock: &UnixDatagram) -> String {
    let mut b = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut b))
        .await
        .expect("no sd_notify message")
        .unwrap();
    String::from_utf8_lossy(&b[..n]).into_owned()
}

async fn get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out[9..12].parse().unwrap();
    (code, out)
}

#[tokio::test]
async fn systemd_notify_reload_metrics_and_drain() {
    let up = Upstream::start(&["x.get", "x.sleep"], "Bearer s3").await;
    let dir = tempfile::tempdir().unwrap();
    let [gw, admin] = free_ports();
    let cfg = dir.path().join("hub.toml");
    std::fs::write(
        &cfg,
        format!("version = 1\n[hub]\nstate_dir = \"state\"\n[gateway]\nlisten = \"127.0.0.1:{gw}\"\nurl = \"https://127.0.0.1:{gw}/mcp\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n"),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let run = |args: &[&str]| cli(c, args);
    assert!(
        run(&[
            "mcp-config",
            "create",
            "--name",
            "x",
            "--endpoint",
            &up.url(),
            "--allowed-tools",
            "x.*"
        ])
        .status
        .success()
    );
    let mut sc = std::process::Command::new(BIN)
        .args(["--config", c, "secret", "create", "S"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(sc.stdin.as_mut().unwrap(), b"s3").unwrap();
    assert!(sc.wait().unwrap().success());
    let out = run(&["devbox", "create", "b", "--mcp", "X=x:S"]);
    let token = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("X="))
        .unwrap()
        .to_string();

    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let log = std::fs::File::create(dir.path().join("hub.log")).unwrap();
    let mut hub = Command::new(BIN)
        .args(["--config", c, "run", "--grace-secs", "10"])
        .env("NOTIFY_SOCKET", &notify_path)
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert!(recv(&notify).await.starts_with("READY=1"));
    let pid = nix::unistd::Pid::from_raw(hub.id().unwrap() as i32);

    let client = Client::new(
        &format!("https://127.0.0.1:{gw}/mcp"),
        &dir.path().join("state/ca/ca.pem"),
        false,
    );
    let call = |tool: &str| json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":{}}});
    assert_eq!(
        client.post(&token, &call("x.get")).await.status,
        StatusCode::OK
    );
    assert_eq!(get(admin, "/healthz").await.0, 200);
    assert_eq!(get(admin, "/readyz").await.0, 200);
    let (_, metrics) = get(admin, "/metrics").await;
    assert!(metrics.contains("mcp_hub_tool_calls_total{config=\"x\",tool=\"x.get\",verdict=\"allow\",outcome=\"ok\"} 1"), "{metrics}");
    assert!(
        metrics.contains("mcp_hub_upstream_latency_seconds_count{config=\"x\"} 1"),
        "{metrics}"
    );

    // SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let m = recv(&notify).await;
    assert!(
        m.starts_with("RELOADING=1\nMONOTONIC_USEC=") && m.len() > 30,
        "{m}"
    );
    assert!(recv(&notify).await.starts_with("READY=1"));

    // An invalid edit: refused, logged with its key, counted; the old config keeps serving.
    let good = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg,
        good.replace(
            "allowed_tools = [\"x.*\"]",
            "allowed_tools = [\"x.*\"]\ntypo = 1",
        ),
    )
    .unwrap();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let _ = recv(&notify).await;
    let _ = recv(&notify).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        client.post(&token, &call("x.get")).await.status,
        StatusCode::OK
    );
    let log = std::fs::read_to_string(dir.path().join("hub.log")).unwrap();
    assert!(
        log.contains("Reload rejected") && log.contains("mcp_configs[0]"),
        "{log}"
    );
    let (_, metrics) = get(admin, "/metrics").await;
    assert!(
        metrics.contains("mcp_hub_reloads_total{result=\"failed\"}"),
        "{metrics}"
    );
    std::fs::write(&cfg, good).unwrap();

    // SIGTERM during a slow call: STOPPING=1, /readyz 503, the call completes, then a clean exit.
    let slow = tokio::spawn(async move { client.post(&token, &call("x.sleep")).await.status });
    // The call must be in flight (at the upstream) before the signal, however slow the machine is.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !up.tool_calls().iter().any(|t| t == "x.sleep") {
        assert!(
            std::time::Instant::now() < deadline,
            "the slow call never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    loop {
        let m = recv(&notify).await;
        if m.starts_with("STOPPING=1") {
            break;
        }
    }
    assert_eq!(get(admin, "/readyz").await.0, 503);
    assert_eq!(
        slow.await.unwrap(),
        StatusCode::OK,
        "in-flight call must finish during the drain"
    );
    let status = tokio::time::timeout(Duration::from_secs(15), hub.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn the_cli_goes_through_the_admin_socket_while_the_service_runs() {
    use std::os::unix::fs::PermissionsExt;
    let up = Upstream::start(&["x.get"], "Bearer s3").await;
    let dir = tempfile::tempdir().unwrap();
    let [gw] = free_ports();
    let cfg = dir.path().join("hub.toml");
    std::fs::write(
        &cfg,
        format!("version = 1\n[hub]\nstate_dir = \"state\"\n[gateway]\nlisten = \"127.0.0.1:{gw}\"\nurl = \"https://127.0.0.1:{gw}/mcp\"\n[admin]\nsocket = \"admin.sock\"\n"),
    )
    .unwrap();
    let c = cfg.to_str().unwrap().to_string();
    let cli = |args: &[&str], stdin: Option<&[u8]>| {
        let mut cmd = std::process::Command::new(BIN);
        cmd.args(["--config", &c])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(b) = stdin {
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), b).unwrap();
        }
        drop(child.stdin.take());
        child.wait_with_output().unwrap()
    };
    let notify_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let _hub = Command::new(BIN)
        .args(["--config", &c, "run"])
        .env("NOTIFY_SOCKET", &notify_path)
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert!(recv(&notify).await.starts_with("READY=1"));
    let sock = dir.path().join("admin.sock");
    assert_eq!(
        std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o660
    );

    // Through the socket: every edit is applied and reloaded before the command returns.
    assert!(
        cli(
            &[
                "mcp-config",
                "create",
                "--name",
                "x",
                "--endpoint",
                &up.url(),
                "--allowed-tools",
                "x.*"
            ],
            None
        )
        .status
        .success()
    );
    assert!(
        cli(&["secret", "create", "S"], Some(b"s3"))
            .status
            .success()
    );
    let out = cli(&["devbox", "create", "b", "--mcp", "X=x:S"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("X="))
        .unwrap()
        .to_string();
    let client = Client::new(
        &format!("https://127.0.0.1:{gw}/mcp"),
        &dir.path().join("state/ca/ca.pem"),
        false,
    );
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x.get","arguments":{}}});
    assert_eq!(
        client.post(&token, &call).await.status,
        StatusCode::OK,
        "no polling delay: the token works at once"
    );
    let out = cli(&["devbox", "revoke", "b", "X"], None);
    assert!(out.status.success());
    assert_eq!(
        client.post(&token, &call).await.status,
        StatusCode::UNAUTHORIZED,
        "revocation is immediate too"
    );
    let out = cli(&["status"], None);
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("service: running"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = cli(
        &[
            "network-policy",
            "create",
            "dev",
            "--allowed-hostnames",
            "github.com,*.githubusercontent.com",
            "--allow-mcp-gateway",
            "true",
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        cli(&["devbox", "set-policy", "b", "dev"], None)
            .status
            .success()
    );
    let out = cli(&["network-policy", "delete", "dev"], None);
    assert_eq!(out.status.code(), Some(1), "in use by devbox b");
    assert!(String::from_utf8_lossy(&out.stderr).contains("devbox b"));
    // Invalid edits are refused by the service with the same exit code and problems.
    let out = cli(
        &["mcp-config", "update", "x", "--allowed-tools", "bad["],
        None,
    );
    assert_eq!(out.status.code(), Some(78));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("allowed_tools[0]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Start `program args` (the hub, possibly under a wrapper that execs it) as systemd would, its log in
/// `dir/hub.log`, and wait for its READY=1. The notify socket comes back too, for later reloads.
async fn start_ready(
    dir: &std::path::Path,
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (tokio::process::Child, UnixDatagram) {
    let notify_path = dir.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let log = std::fs::File::create(dir.join("hub.log")).unwrap();
    let hub = Command::new(program)
        .args(args)
        .env("NOTIFY_SOCKET", &notify_path)
        .envs(env.iter().copied())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert!(recv(&notify).await.starts_with("READY=1"));
    (hub, notify)
}

/// SIGHUP the hub and wait until systemd would see the reload finished (RELOADING=1, then READY=1).
async fn reload(hub: &tokio::process::Child, notify: &UnixDatagram) {
    let pid = nix::unistd::Pid::from_raw(hub.id().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(recv(notify).await.starts_with("RELOADING=1"));
    assert!(recv(notify).await.starts_with("READY=1"));
}

/// CPU time (user + system, in clock ticks) the process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Out of file descriptors, every listener backs off instead of spinning on the connection it cannot
/// take, and once descriptors free up the hub accepts again by itself.
#[tokio::test]
async fn descriptor_exhaustion_backs_off_and_recovers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let [gw, admin, explicit] = free_ports();
    let cfg = dir.path().join("hub.toml");
    std::fs::write(
        &cfg,
        format!("version = 1\n[hub]\nstate_dir = \"state\"\n[gateway]\nlisten = \"127.0.0.1:{gw}\"\nurl = \"https://127.0.0.1:{gw}/mcp\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[egress]\nexplicit_listen = \"127.0.0.1:{explicit}\"\nclient_hello_timeout_ms = 60000\n[[network_policies]]\nname = \"p\"\n"),
    )
    .unwrap();
    // A devbox at the flood's address, so the proxy holds each connection waiting for its request.
    let c = cfg.to_str().unwrap();
    let out = cli(
        c,
        &[
            "devbox",
            "create",
            "b",
            "--address",
            "127.0.0.1",
            "--network-policy",
            "p",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut hub, notify) = start_ready(
        dir.path(),
        "prlimit",
        &["--nofile=64:64", BIN, "--config", c, "run"],
        &[],
    )
    .await;
    let pid = hub.id().unwrap();
    // Use up the hub's descriptors with connections that never send a byte.
    let mut flood = Vec::new();
    for _ in 0..120 {
        flood.push(
            tokio::net::TcpStream::connect(("127.0.0.1", explicit))
                .await
                .unwrap(),
        );
    }
    // A health check now waits in the admin listener's backlog, which the hub cannot take from.
    let mut probe = tokio::net::TcpStream::connect(("127.0.0.1", admin))
        .await
        .unwrap();
    probe
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(pid) - before;
    eprintln!("{used} ticks of CPU in 2 s while out of descriptors");
    // A reload while out of descriptors: it cannot read the files, so it keeps the configuration it
    // has, but systemd still hears RELOADING=1 and READY=1, and the hub recovers after.
    reload(&hub, &notify).await;
    let log_text = std::fs::read_to_string(dir.path().join("hub.log")).unwrap();
    assert!(
        log_text.contains("Accept failed"),
        "descriptors never ran out: {log_text}"
    );
    // 2 s of wall time: a spinning accept loop burns ~200 ticks; backing off, a handful.
    assert!(
        used < 40,
        "{used} ticks of CPU in 2 s while out of descriptors"
    );
    drop(flood);
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), probe.read_to_string(&mut out))
        .await
        .expect("the hub did not recover")
        .unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let _ = hub.kill().await;
}

async fn ping(t: &mut tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fut = async {
        t.write_all(b"ping").await.unwrap();
        let mut b = [0u8; 4];
        t.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"ping");
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .expect("the tunnel did not echo");
}

/// SIGTERM drains egress too: the listener stops accepting, an open tunnel keeps working through the
/// grace period, and the process exits as soon as it ends.
#[tokio::test]
async fn sigterm_drains_open_tunnels() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let echo = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let mut b = [0u8; 64];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 || s.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let [gw, explicit] = free_ports();
    let cfg = dir.path().join("hub.toml");
    std::fs::write(
        &cfg,
        format!("version = 1\n[hub]\nstate_dir = \"state\"\n[gateway]\nlisten = \"127.0.0.1:{gw}\"\nurl = \"https://127.0.0.1:{gw}/mcp\"\n[egress]\nexplicit_listen = \"127.0.0.1:{explicit}\"\nallowed_private_ranges = [\"127.0.0.0/8\"]\nallowed_host_services = [\"127.0.0.2:*\"]\n[[network_policies]]\nname = \"p\"\nallowed_hostnames = [\"127.0.0.2\"]\n"),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let out = cli(
        c,
        &[
            "devbox",
            "create",
            "b",
            "--address",
            "127.0.0.1",
            "--network-policy",
            "p",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut hub, _notify) = start_ready(
        dir.path(),
        BIN,
        &["--config", c, "run", "--grace-secs", "30"],
        &[],
    )
    .await;
    let mut t = tokio::net::TcpStream::connect(("127.0.0.1", explicit))
        .await
        .unwrap();
    t.write_all(format!("CONNECT {echo_addr} HTTP/1.1\r\nHost: {echo_addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut b = [0u8; 39];
    t.read_exact(&mut b).await.unwrap();
    assert!(
        b.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&b)
    );
    ping(&mut t).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(hub.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // New connections are no longer taken; the open tunnel still carries data.
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", explicit))
            .await
            .is_err(),
        "the egress listener still accepts while draining"
    );
    ping(&mut t).await;
    assert!(
        hub.try_wait().unwrap().is_none(),
        "exited with a tunnel open"
    );
    drop(t);
    let status = tokio::time::timeout(Duration::from_secs(5), hub.wait())
        .await
        .expect("the hub did not exit once the tunnel ended")
        .unwrap();
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(dir.path().join("hub.log")).unwrap();
    assert!(log.contains("Egress drained"), "{log}");
}

/// Ten thousand idle connections (half on the gateway, half on the egress proxy) do not stop the hub
/// from serving a real call and a real tunnel at once.
#[tokio::test]
async fn ten_thousand_idle_connections_do_not_starve_real_work() {
    use tokio::io::AsyncReadExt;
    use tokio::io::AsyncWriteExt;
    // Both this process and the hub hold one descriptor per connection.
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let soft: usize = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let idle_count = 10_000usize.min(soft.saturating_sub(500));
    let up = Upstream::start(&["x.get"], "Bearer s9").await;
    let dir = tempfile::tempdir().unwrap();
    let [gw, explicit] = free_ports();
    let cfg = dir.path().join("hub.toml");
    std::fs::write(
        &cfg,
        format!("version = 1\n[hub]\nstate_dir = \"state\"\n[gateway]\nlisten = \"127.0.0.1:{gw}\"\nurl = \"https://127.0.0.1:{gw}/mcp\"\nclient_timeout_ms = 60000\n[egress]\nexplicit_listen = \"127.0.0.1:{explicit}\"\nclient_hello_timeout_ms = 60000\nallowed_private_ranges = [\"127.0.0.0/8\"]\nallowed_host_services = [\"127.0.0.1:*\", \"[::1]:*\"]\n[[network_policies]]\nname = \"p\"\nallowed_hostnames = [\"localhost\"]\n"),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    let ok = |args: &[&str]| {
        let o = cli(c, args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(&[
        "mcp-config",
        "create",
        "--name",
        "x",
        "--endpoint",
        &up.url(),
        "--allowed-tools",
        "x.*",
    ]);
    let mut sc = std::process::Command::new(BIN)
        .args(["--config", c, "secret", "create", "S"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(sc.stdin.as_mut().unwrap(), b"s9").unwrap();
    assert!(sc.wait().unwrap().success());
    let out = ok(&[
        "devbox",
        "create",
        "b",
        "--address",
        "127.0.0.1",
        "--network-policy",
        "p",
        "--mcp",
        "X=x:S",
    ]);
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("X="))
        .unwrap()
        .to_string();
    let (mut hub, notify) = start_ready(
        dir.path(),
        BIN,
        &["--config", c, "run"],
        &[("MCP_HUB_LOG", "warn")],
    )
    .await;

    let mut idle = Vec::with_capacity(idle_count);
    for i in 0..idle_count {
        let port = if i % 2 == 0 { gw } else { explicit };
        idle.push(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A reload with every idle connection open: none of them is dropped by it, and work goes on.
    reload(&hub, &notify).await;
    let start = std::time::Instant::now();
    let client = Client::new(
        &format!("https://127.0.0.1:{gw}/mcp"),
        &dir.path().join("state/ca/ca.pem"),
        false,
    );
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x.get","arguments":{}}});
    assert_eq!(client.post(&token, &call).await.status, StatusCode::OK);
    let mut t = tokio::net::TcpStream::connect(("127.0.0.1", explicit))
        .await
        .unwrap();
    let up_port = up.url().parse::<http::Uri>().unwrap().port_u16().unwrap();
    let target = format!("localhost:{up_port}");
    t.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 12];
    t.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "{idle_count} idle connections: real work took {took:?}"
    );
    assert!(hub.try_wait().unwrap().is_none(), "the hub died");
    eprintln!("{idle_count} idle connections: a call and a CONNECT in {took:?}");
    // The idle egress connections outlived the reload: each is still open (a read would block, not
    // end). The gateway's idle ones are not checked: their TLS handshake deadline (10 s) may have
    // passed by now on a slow machine, which closes them whatever the reload does.
    for s in idle.iter().skip(1).step_by(2) {
        let mut b = [0u8; 1];
        match s.try_read(&mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("an idle connection ended across the reload: {other:?}"),
        }
    }
    drop(idle);
    let _ = hub.kill().await;
}
