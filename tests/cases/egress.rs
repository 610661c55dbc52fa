//! The explicit egress proxy on loopback: verdicts, reason codes, the bypass classes, and the MCP gateway
//! reached through the proxy. Loopback destinations are allowed only through the operator's
//! `allowed_private_ranges` knob, exactly as a private network would be. (Transparent capture needs
//! network namespaces: tests/netns.rs.)

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{Hub, Upstream};

const POLICIES: &str = r#"
[[network_policies]]
name = "agents"
description = "what agents may reach"
allowed_hostnames = ["localhost", "*.example.org", "127.0.0.2"]
allow_mcp_gateway = true

[[network_policies]]
name = "no-gateway"
allowed_hostnames = ["localhost"]
"#;

/// A hub whose "world" is loopback: `private` is `allowed_private_ranges`; with any, the loopback
/// addresses the test origins listen on are also listed as host services (the hub host's own
/// addresses are refused on every port otherwise, whatever the ranges say).
async fn hub(private: &str) -> (Hub, SocketAddr) {
    let up = Upstream::start(&["github.get_issue", "github.delete_repo"], "Bearer k").await;
    let services = if private.is_empty() {
        ""
    } else {
        "\"127.0.0.1:*\", \"127.0.0.2:*\", \"[::1]:*\""
    };
    let extra = format!(
        "[egress]\nexplicit_listen = \"127.0.0.1:0\"\ndns_listen = \"127.0.0.1:0\"\nallowed_private_ranges = [{private}]\nallowed_host_services = [{services}]\n{POLICIES}"
    );
    let hub = Hub::start_with(&[("github", &up.url(), &["github.get_*"])], &extra).await;
    let explicit = hub.egress.1.unwrap();
    std::mem::forget(up); // keep the upstream's task alive for the hub's lifetime
    (hub, explicit)
}

/// A TCP echo server on 127.0.0.2, which the "agents" policy lists as a raw IP: opaque bytes through a
/// CONNECT are judged by the address dialled, and 127.0.0.1 is the devbox's own address here.
async fn echo_server() -> SocketAddr {
    echo_server_on("127.0.0.2").await
}

async fn echo_server_on(ip: &str) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut b = [0u8; 1024];
                while let Ok(n) = s.read(&mut b).await {
                    if n == 0 || s.write_all(&b[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    a
}

/// An origin that answers with the request head it received.
async fn http_origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut b = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut b).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&b[..n]);
                }
                let body = String::from_utf8_lossy(&buf).to_string();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    a
}

/// Send raw bytes to the proxy and read the response head (and what follows, until close or timeout).
async fn raw(proxy: SocketAddr, req: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .unwrap()
        {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
    (s, String::from_utf8_lossy(&buf).to_string())
}

fn connect(target: &str) -> String {
    format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n")
}

fn assert_denied(resp: &str, reason: &str) {
    assert!(
        resp.starts_with("HTTP/1.1 403") || resp.starts_with("HTTP/1.1 421"),
        "{resp}"
    );
    assert!(
        resp.contains(&format!("X-Proxy-Error: {reason}\r\n")),
        "want {reason}: {resp}"
    );
}

#[tokio::test]
async fn connect_verdicts_and_reasons() {
    let (hub, proxy) = hub("\"127.0.0.0/8\", \"::1/128\"").await;
    hub.devbox_with_policy("agent", &["127.0.0.1"], "agents", &[]);
    let echo = echo_server().await;

    // Allowed raw IP: opaque bytes tunnelled.
    let (mut s, resp) = raw(proxy, &connect(&echo.to_string())).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    s.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"ping");
    // SECURITY: an allowed name carries only what the hub can check the host of; opaque bytes to a
    // name are judged by the address dialled (here the devbox's own) and reset.
    let echo1 = echo_server_on("127.0.0.1").await;
    let (mut s, resp) = raw(proxy, &connect(&format!("localhost:{}", echo1.port()))).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    s.write_all(b"ping").await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");

    // Denied name: immediate 403 with a reason code and an explanation naming host and policy.
    let (_, resp) = raw(proxy, &connect("github.com:443")).await;
    assert_denied(&resp, "not_in_allowed_hostnames");
    let (_, body) = raw(proxy, &connect("evil.test:443")).await;
    assert!(
        body.contains(
            "evil.test: blocked by network policy for devbox \"agent\" (network policy \"agents\")"
        ),
        "{body}"
    );
    // The wildcard covers subdomains, not the apex.
    let (_, resp) = raw(proxy, &connect("example.org:443")).await;
    assert_denied(&resp, "not_in_allowed_hostnames");

    // Raw IPs in every spelling.
    for t in [
        format!("127.0.0.3:{}", echo.port()),
        "2130706435:80".into(),
        "0x7f.3:80".into(),
        "0177.0.0.3:80".into(),
        "[::ffff:169.254.169.254]:80".into(),
        "169.254.169.254:80".into(),
    ] {
        let (_, resp) = raw(proxy, &connect(&t)).await;
        assert_denied(&resp, "raw_ip");
    }
    // The devbox's own address counts as devbox-to-devbox.
    let (_, resp) = raw(proxy, &connect(&format!("127.0.0.1:{}", echo.port()))).await;
    assert_denied(&resp, "devbox_to_devbox_not_allowed");
    // Loops back into the hub's own listeners.
    for port in [proxy.port(), hub.addr.port()] {
        let (_, resp) = raw(proxy, &connect(&format!("localhost:{port}"))).await;
        assert_denied(&resp, "loop_to_hub");
    }
    // An allowed CONNECT cannot carry TLS for another name.
    let (s, resp) = raw(proxy, &connect(&format!("localhost:{}", echo1.port()))).await;
    assert!(resp.starts_with("HTTP/1.1 200"));
    let cfg = rustls::ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let err = tokio_rustls::TlsConnector::from(std::sync::Arc::new(cfg))
        .connect("evil.example".try_into().unwrap(), s)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("AccessDenied"), "{err}");
}

#[tokio::test]
async fn the_hub_host_is_no_destination_without_the_operators_allowance() {
    let (hub, proxy) = hub("").await;
    hub.devbox_with_policy("agent", &["127.0.0.1"], "agents", &[]);
    let echo = echo_server().await;
    let (_, resp) = raw(proxy, &connect(&format!("localhost:{}", echo.port()))).await;
    assert_denied(&resp, "host_address");
}

#[tokio::test]
async fn unknown_sources_and_devboxes_without_policy_get_nothing() {
    let (hub, proxy) = hub("\"127.0.0.0/8\"").await;
    let (_, resp) = raw(proxy, &connect("localhost:80")).await;
    assert_denied(&resp, "unknown_devbox");
    hub.edit(|ws| {
        mcp_hub::ops::edit::devbox::Create {
            name: "bare".into(),
            addresses: vec!["127.0.0.1".parse().unwrap()],
            network_policy: None,
            mcp: vec![],
            gateway: vec![],
        }
        .apply(ws)
        .unwrap();
    });
    hub.sync();
    let (_, resp) = raw(proxy, &connect("localhost:80")).await;
    assert_denied(&resp, "no_network_policy");
}

#[tokio::test]
async fn absolute_form_requests_are_checked_and_rewritten() {
    let (hub, proxy) = hub("\"127.0.0.0/8\", \"::1/128\"").await;
    hub.devbox_with_policy("agent", &["127.0.0.1"], "agents", &[]);
    let origin = http_origin().await;
    let p = origin.port();
    let (mut s, resp) = raw(proxy, &format!("GET http://localhost:{p}/x?y=1 HTTP/1.1\r\nHost: localhost:{p}\r\nProxy-Connection: keep-alive\r\n\r\n")).await;
    let mut rest = String::new();
    let _ = s.read_to_string(&mut rest).await;
    let all = format!("{resp}{rest}");
    assert!(all.starts_with("HTTP/1.1 200"), "{all}");
    // The origin saw origin-form, its own Host, no proxy headers, and Connection: close.
    assert!(all.contains("GET /x?y=1 HTTP/1.1\r\n"), "{all}");
    let lower = all.to_ascii_lowercase();
    assert!(
        lower.contains("\r\nconnection: close\r\n") && !lower.contains("proxy-connection"),
        "{all}"
    );

    // Host and target disagree: refused, whichever of them is allowed.
    let (_, resp) = raw(
        proxy,
        &format!("GET http://localhost:{p}/ HTTP/1.1\r\nHost: evil.example\r\n\r\n"),
    )
    .await;
    assert_denied(&resp, "host_mismatch");
    let (_, resp) = raw(
        proxy,
        &format!("GET http://evil.example/ HTTP/1.1\r\nHost: localhost:{p}\r\n\r\n"),
    )
    .await;
    assert_denied(&resp, "host_mismatch");
    let (_, resp) = raw(
        proxy,
        "GET http://github.com/ HTTP/1.1\r\nHost: github.com\r\n\r\n",
    )
    .await;
    assert_denied(&resp, "not_in_allowed_hostnames");
    // Not a proxy request at all.
    let (_, resp) = raw(proxy, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
}

#[tokio::test]
async fn the_mcp_gateway_through_the_proxy_is_the_gateway() {
    let (hub, proxy) = hub("\"127.0.0.0/8\"").await;
    hub.secret("S", "k");
    let env = hub.devbox_with_policy(
        "agent",
        &["127.0.0.1"],
        "agents",
        &["GITHUB_MCP_SECRET=github:S"],
    );
    let token = &env["GITHUB_MCP_SECRET"];
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    // tokio::process: the proxy runs on this test's runtime, which a blocking wait would starve.
    let curl = |extra: &[&str]| {
        let mut c = tokio::process::Command::new("curl");
        c.args([
            "-sS",
            "--max-time",
            "10",
            "--cacert",
            hub.ca_file.to_str().unwrap(),
            "-H",
            &format!("Authorization: Bearer {token}"),
        ])
        .args([
            "-H",
            "Content-Type: application/json",
            "-H",
            "Accept: application/json, text/event-stream",
            "-d",
            body,
        ])
        .args(extra)
        .arg(&hub.url);
        c.output()
    };
    let direct = curl(&[]).await.unwrap();
    let proxied = curl(&["--proxy", &format!("http://{proxy}")])
        .await
        .unwrap();
    assert!(
        proxied.status.success(),
        "{}",
        String::from_utf8_lossy(&proxied.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&proxied.stdout),
        String::from_utf8_lossy(&direct.stdout)
    );
    assert!(String::from_utf8_lossy(&proxied.stdout).contains("github.get_issue"));
    assert!(!String::from_utf8_lossy(&proxied.stdout).contains("delete_repo"));

    // Without allow_mcp_gateway the gateway is denied like any other host.
    hub.edit(|ws| {
        mcp_hub::ops::edit::devbox::SetPolicy {
            name: "agent".into(),
            policy: Some("no-gateway".into()),
        }
        .apply(ws)
        .unwrap();
    });
    hub.sync();
    let (_, resp) = raw(proxy, &connect(&format!("127.0.0.1:{}", hub.addr.port()))).await;
    assert_denied(&resp, "mcp_gateway_not_allowed");
}

/// Ask the hub's DNS responder over UDP; returns (rcode, answers).
async fn dns_query(
    server: SocketAddr,
    name: &str,
    qtype: hickory_proto::rr::RecordType,
) -> (hickory_proto::op::ResponseCode, Vec<String>) {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::Name;
    let mut m = Message::new();
    m.set_id(4242).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&m.to_vec().unwrap(), server).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let r = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(r.id(), 4242);
    (
        r.response_code(),
        r.answers().iter().map(|a| a.data().to_string()).collect(),
    )
}

#[tokio::test]
async fn dns_answers_only_allowed_names_and_forwards_nothing() {
    use hickory_proto::op::ResponseCode;
    use hickory_proto::rr::RecordType;
    let (hub, _) = hub("\"127.0.0.0/8\"").await;
    let dns = hub.egress.2.unwrap();
    // Unknown source: refused.
    assert_eq!(
        dns_query(dns, "localhost.", RecordType::A).await.0,
        ResponseCode::Refused
    );
    hub.devbox_with_policy("agent", &["127.0.0.1"], "agents", &[]);
    let (rc, answers) = dns_query(dns, "localhost.", RecordType::A).await;
    assert_eq!(
        (rc, answers),
        (ResponseCode::NoError, vec!["127.0.0.1".to_string()])
    );
    // Not allowed, including names that smuggle data in their labels: refused, never resolved.
    for name in [
        "github.com.",
        "c2VjcmV0LWRhdGE.exfil.attacker.example.",
        "example.org.",
    ] {
        assert_eq!(
            dns_query(dns, name, RecordType::A).await.0,
            ResponseCode::Refused,
            "{name}"
        );
    }
    // An allowed wildcard name that does not resolve is refused, not forwarded elsewhere.
    assert_eq!(
        dns_query(dns, "nothing-here.example.org.", RecordType::A)
            .await
            .0,
        ResponseCode::Refused
    );
    // Other record types for allowed names: an empty answer.
    let (rc, answers) = dns_query(dns, "localhost.", RecordType::TXT).await;
    assert_eq!((rc, answers.len()), (ResponseCode::NoError, 0));
}

#[tokio::test]
async fn a_reload_that_removes_a_hostname_closes_its_open_tunnels() {
    let (hub, proxy) = hub("\"127.0.0.0/8\", \"::1/128\"").await;
    hub.devbox_with_policy("agent", &["127.0.0.1"], "agents", &[]);
    let echo = echo_server().await;
    let (mut s, resp) = raw(proxy, &connect(&echo.to_string())).await;
    assert!(resp.starts_with("HTTP/1.1 200"));
    s.write_all(b"ping").await.unwrap();
    let mut b = [0u8; 4];
    s.read_exact(&mut b).await.unwrap();
    // The operator removes the address from the policy.
    let text = std::fs::read_to_string(&hub.config_file).unwrap();
    assert!(text.contains(", \"127.0.0.2\"]"));
    std::fs::write(&hub.config_file, text.replacen(", \"127.0.0.2\"]", "]", 1)).unwrap();
    let removed = std::time::Instant::now();
    // The open tunnel is closed (EOF) within a second; a new one is refused.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("tunnel still open")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        removed.elapsed() < Duration::from_millis(1500),
        "{:?}",
        removed.elapsed()
    );
    let (_, resp) = raw(proxy, &connect(&echo.to_string())).await;
    assert_denied(&resp, "raw_ip");
}

#[tokio::test]
async fn reloads_under_tunnelled_load_fail_no_connection() {
    let (hub, proxy) = hub("\"127.0.0.0/8\", \"::1/128\"").await;
    hub.devbox_with_policy("agent", &["127.0.0.1"], "agents", &[]);
    let echo = echo_server().await;
    let probe = move || async move {
        let (mut s, resp) = raw(proxy, &connect(&echo.to_string())).await;
        let mut b = [0u8; 4];
        resp.starts_with("HTTP/1.1 200")
            && s.write_all(b"ping").await.is_ok()
            && s.read_exact(&mut b).await.is_ok()
            && &b == b"ping"
    };
    let (ok, failed) = hub
        .edits_under_load(probe, |ws, i| {
            let fields = mcp_hub::ops::edit::network_policy::Fields {
                description: Some(format!("edit {i}")),
                ..Default::default()
            };
            let name = "agents".into();
            mcp_hub::ops::edit::network_policy::Update { name, fields }
                .apply(ws)
                .unwrap();
        })
        .await;
    assert!(ok > 20, "the load ran ({ok} tunnels)");
    assert_eq!(
        failed,
        0,
        "{failed} of {} tunnelled requests failed across 10 reloads",
        ok + failed
    );
}

/// Everything the proxy answers on `s` until it closes (or 5 s pass).
async fn read_all(s: &mut TcpStream, mut got: String) -> String {
    let mut b = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => return got,
            Ok(Ok(n)) => got.push_str(&String::from_utf8_lossy(&b[..n])),
        }
    }
}

fn assert_refused(resp: &str, status: u16, reason: &str) {
    assert!(
        resp.starts_with(&format!("HTTP/1.1 {status} ")),
        "want {status}: {resp}"
    );
    assert!(
        resp.contains(&format!("X-Proxy-Error: {reason}\r\n")),
        "want {reason}: {resp}"
    );
}

#[tokio::test]
async fn requests_an_origin_could_read_differently_are_refused() {
    let (hub, proxy) = hub("\"127.0.0.0/8\", \"::1/128\"").await;
    hub.devbox_with_policy("agent", &["127.0.0.1"], "agents", &[]);
    let p = http_origin().await.port();
    let url = format!("http://localhost:{p}/");
    let ok_host = format!("Host: localhost:{p}\r\n");
    // SECURITY (RFC 9112 §3.2, §6.3): two Hosts, conflicting lengths, both framings: 400, never forwarded.
    for (extra, reason) in [
        ("Host: evil.example\r\n", "ambiguous_request"),
        (
            "Content-Length: 1\r\nContent-Length: 2\r\n",
            "ambiguous_request",
        ),
        (
            "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n",
            "ambiguous_request",
        ),
        (
            "Transfer-Encoding: chunked, identity\r\n",
            "ambiguous_request",
        ),
        ("X-Folded: a\r\n b\r\n", "malformed_request"),
        ("X-Bare: a\rHost: evil.example\r\n", "malformed_request"),
    ] {
        let (_, resp) = raw(
            proxy,
            &format!("POST {url} HTTP/1.1\r\n{ok_host}{extra}\r\n"),
        )
        .await;
        assert_refused(&resp, 400, reason);
    }
    // The duplicate after the CONNECT, inside the tunnel, as well.
    let (mut s, resp) = raw(proxy, &connect(&format!("localhost:{p}"))).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    s.write_all(format!("GET / HTTP/1.1\r\n{ok_host}Host: evil.example\r\n\r\n").as_bytes())
        .await
        .unwrap();
    assert_refused(
        &read_all(&mut s, String::new()).await,
        400,
        "ambiguous_request",
    );
}

#[tokio::test]
async fn plain_http_inside_a_connect_tunnel_must_name_the_connect_host() {
    let (hub, proxy) = hub("\"127.0.0.0/8\", \"::1/128\"").await;
    hub.devbox_with_policy("agent", &["127.0.0.1"], "agents", &[]);
    let p = http_origin().await.port();
    let tunnel = connect(&format!("localhost:{p}"));
    // SECURITY: another Host inside an allowed tunnel, after the 200 or in the CONNECT's own segment,
    // in any spelling an origin accepts (a lowercase method, leading empty lines, absolute-form).
    for inner in [
        "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n".to_string(),
        "get / HTTP/1.1\r\nHost: evil.example\r\n\r\n".to_string(),
        "\r\nGET / HTTP/1.1\r\nHost: evil.example\r\n\r\n".to_string(),
        format!("GET http://evil.example/ HTTP/1.1\r\nHost: localhost:{p}\r\n\r\n"),
        format!("GET / HTTP/1.1\r\nHost: localhost:{}\r\n\r\n", p + 1),
    ] {
        let (mut s, resp) = raw(proxy, &tunnel).await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        s.write_all(inner.as_bytes()).await.unwrap();
        let got = read_all(&mut s, String::new()).await;
        assert_refused(&got, 421, "host_mismatch");
        assert!(!got.contains("evil.example\r\n\r\nHTTP"), "{got}");

        let (mut s, resp) = raw(proxy, &format!("{tunnel}{inner}")).await;
        let got = read_all(&mut s, resp).await;
        assert!(
            got.starts_with("HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 421 "),
            "{inner:?}: {got}"
        );
        assert!(got.contains("X-Proxy-Error: host_mismatch\r\n"), "{got}");
    }
    // The host it was opened for is served, and only the first request reaches the origin: a second
    // one pipelined behind it (for another host) is never forwarded.
    let (mut s, resp) = raw(proxy, &tunnel).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    s.write_all(
        format!("GET /first HTTP/1.1\r\nHost: localhost:{p}\r\n\r\nGET /second HTTP/1.1\r\nHost: evil.example\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let got = read_all(&mut s, String::new()).await;
    assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
    assert!(
        got.contains("GET /first HTTP/1.1\r\n")
            && got
                .to_ascii_lowercase()
                .contains("\r\nconnection: close\r\n"),
        "{got}"
    );
    assert!(!got.contains("/second"), "{got}");
    // The same holds for a transparent-style request through the explicit proxy.
    let (mut s, resp) = raw(
        proxy,
        &format!("GET http://localhost:{p}/one HTTP/1.1\r\nHost: localhost:{p}\r\n\r\nGET /two HTTP/1.1\r\nHost: evil.example\r\n\r\n"),
    )
    .await;
    let got = read_all(&mut s, resp).await;
    assert!(
        got.contains("GET /one HTTP/1.1\r\n") && !got.contains("/two"),
        "{got}"
    );
}

/// A nameserver on loopback: names starting with `slow` are answered after two seconds, every other
/// name at once, all with 127.0.0.2.
async fn slow_nameserver() -> SocketAddr {
    use hickory_proto::op::{Message, MessageType};
    use hickory_proto::rr::{RData, Record, rdata::A};
    let sock = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, src)) = sock.recv_from(&mut buf).await else {
                continue;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let sock = sock.clone();
            tokio::spawn(async move {
                let name = q.queries()[0].name().clone();
                if name.to_ascii().starts_with("slow") {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                let mut r = Message::new();
                r.set_id(q.id())
                    .set_message_type(MessageType::Response)
                    .set_recursion_available(true);
                r.add_query(q.queries()[0].clone());
                if q.queries()[0].query_type() == hickory_proto::rr::RecordType::A {
                    r.add_answer(Record::from_rdata(
                        name,
                        60,
                        RData::A(A("127.0.0.2".parse().unwrap())),
                    ));
                }
                let _ = sock.send_to(&r.to_vec().unwrap(), src).await;
            });
        }
    });
    addr
}

/// SECURITY: one devbox flooding the DNS responder with names that resolve slowly neither stalls
/// another devbox's lookups nor its connections: lookups are asynchronous and bounded per devbox.
#[tokio::test]
async fn a_dns_flood_from_one_devbox_does_not_delay_another() {
    use hickory_proto::op::{Message, Query, ResponseCode};
    use hickory_proto::rr::{Name, RecordType};
    let ns = slow_nameserver().await;
    let up = Upstream::start(&["x.get"], "Bearer k").await;
    let extra = format!(
        "[egress]\nexplicit_listen = \"127.0.0.1:0\"\ndns_listen = \"127.0.0.1:0\"\nallowed_private_ranges = [\"127.0.0.0/8\"]\nallowed_host_services = [\"127.0.0.2:*\"]\nresolvers = [\"{ns}\"]\n{POLICIES}"
    );
    let hub = Hub::start_with(&[("x", &up.url(), &["x.*"])], &extra).await;
    let (proxy, dns) = (hub.egress.1.unwrap(), hub.egress.2.unwrap());
    hub.devbox_with_policy("flooder", &["127.0.0.1"], "agents", &[]);
    hub.devbox_with_policy("victim", &["127.0.0.3"], "agents", &[]);
    let echo = echo_server().await;

    // The flood: 3000 queries for distinct slow names from one devbox, as fast as it can send.
    let flooder = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..3000u32 {
        let mut m = Message::new();
        m.set_id(i as u16).set_recursion_desired(true);
        let name = Name::from_ascii(format!("slow-{i}.example.org.")).unwrap();
        m.add_query(Query::query(name, RecordType::A));
        flooder.send_to(&m.to_vec().unwrap(), dns).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Meanwhile the other devbox resolves and connects at once.
    let start = std::time::Instant::now();
    let victim = tokio::net::UdpSocket::bind("127.0.0.3:0").await.unwrap();
    let mut m = Message::new();
    m.set_id(7).set_recursion_desired(true);
    m.add_query(Query::query(
        Name::from_ascii("fast.example.org.").unwrap(),
        RecordType::A,
    ));
    victim.send_to(&m.to_vec().unwrap(), dns).await.unwrap();
    let mut buf = [0u8; 2048];
    let n = loop {
        let (n, _) = tokio::time::timeout(Duration::from_secs(2), victim.recv_from(&mut buf))
            .await
            .expect("the victim's query was not answered")
            .unwrap();
        if Message::from_vec(&buf[..n]).unwrap().id() == 7 {
            break n;
        }
    };
    let r = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(r.response_code(), ResponseCode::NoError);
    let dns_took = start.elapsed();

    let start = std::time::Instant::now();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.3:0".parse().unwrap()).unwrap();
    let mut s = sock.connect(proxy).await.unwrap();
    let target = format!("fast.example.org:{}", echo.port());
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut head))
        .await
        .expect("the victim's CONNECT was not answered")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let connect_took = start.elapsed();
    assert!(
        dns_took < Duration::from_millis(500) && connect_took < Duration::from_millis(500),
        "during the flood: DNS {dns_took:?}, CONNECT {connect_took:?}"
    );

    // The flooder itself was held to its share: beyond it, SERVFAIL at once (resolve_busy). (Most of
    // those answers overflow the flooder's socket buffer; a few hundred arrive.)
    let mut busy = 0;
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(300), flooder.recv_from(&mut buf)).await
    {
        if Message::from_vec(&buf[..n]).unwrap().response_code() == ResponseCode::ServFail {
            busy += 1;
        }
    }
    assert!(
        busy >= 100,
        "only {busy} flood queries were refused as busy"
    );
}

/// An origin that accepts and never answers, and one whose response header never ends.
async fn hostile_origins() -> (SocketAddr, SocketAddr) {
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endless = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addrs = (silent.local_addr().unwrap(), endless.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    tokio::spawn(async move {
        while let Ok((mut s, _)) = endless.accept().await {
            tokio::spawn(async move {
                let mut b = [0u8; 4096];
                let _ = s.read(&mut b).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nX-Endless: ").await;
                let chunk = [b'a'; 8192];
                while s.write_all(&chunk).await.is_ok() {}
            });
        }
    });
    addrs
}

/// Hostile origins and clients on the egress side, with a reload in the middle: each is ended with a
/// clear answer within its bound, and a well-behaved agent is served throughout.
#[tokio::test]
async fn egress_survives_hostile_origins_and_slow_clients_across_a_reload() {
    let up = Upstream::start(&["x.get"], "Bearer k").await;
    let extra = format!(
        "[egress]\nexplicit_listen = \"127.0.0.1:0\"\ndns_listen = \"127.0.0.1:0\"\nallowed_private_ranges = [\"127.0.0.0/8\"]\nallowed_host_services = [\"127.0.0.1:*\", \"[::1]:*\"]\nclient_hello_timeout_ms = 500\nidle_timeout_ms = 800\n{POLICIES}"
    );
    let hub = Hub::start_with(&[("x", &up.url(), &["x.*"])], &extra).await;
    let (proxy, dns) = (hub.egress.1.unwrap(), hub.egress.2.unwrap());
    hub.devbox_with_policy("agent", &["127.0.0.1"], "agents", &[]);
    let good = http_origin().await.port();
    let (silent, endless) = hostile_origins().await;
    let get = |port: u16| {
        format!("GET http://localhost:{port}/ HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n")
    };
    let served = || async move {
        let (mut s, resp) = raw(proxy, &get(good)).await;
        read_all(&mut s, resp).await.starts_with("HTTP/1.1 200")
    };

    let start = std::time::Instant::now();
    // Slow-loris heads on the explicit proxy (in a tunnel too) and on DNS over TCP.
    let mut loris = TcpStream::connect(proxy).await.unwrap();
    loris
        .write_all(b"GET http://localhost/ HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let (mut in_tunnel, resp) = raw(proxy, &connect(&format!("localhost:{good}"))).await;
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    in_tunnel.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
    let mut dns_loris = TcpStream::connect(dns).await.unwrap();
    dns_loris.write_all(&[0]).await.unwrap();
    // Origins that never answer, or never finish their header.
    let hostile = async {
        let (mut s, resp) = raw(proxy, &get(silent.port())).await;
        let silent_answer = read_all(&mut s, resp).await;
        let (mut s, resp) = raw(proxy, &get(endless.port())).await;
        let endless_answer = read_all(&mut s, resp).await;
        (silent_answer, endless_answer)
    };
    let reload = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        hub.edit(|ws| {
            let fields = mcp_hub::ops::edit::network_policy::Fields {
                description: Some("edited under fire".into()),
                ..Default::default()
            };
            let name = "agents".into();
            mcp_hub::ops::edit::network_policy::Update { name, fields }
                .apply(ws)
                .unwrap();
        });
        hub.sync();
        served().await
    };
    let ((silent_answer, endless_answer), served_after_reload, loris_out, tunnel_out) = tokio::join!(
        hostile,
        reload,
        read_all(&mut loris, String::new()),
        read_all(&mut in_tunnel, String::new()),
    );
    assert!(
        served_after_reload,
        "a good request failed during the faults"
    );
    assert!(
        silent_answer.starts_with("HTTP/1.1 504")
            && silent_answer.contains("x-proxy-error: upstream_timeout"),
        "{silent_answer}"
    );
    assert!(
        endless_answer.starts_with("HTTP/1.1 502")
            && endless_answer.contains("x-proxy-error: upstream_error"),
        "{}",
        &endless_answer[..endless_answer.len().min(300)]
    );
    // The slow heads were closed (without a forwarded request), not kept.
    assert!(!loris_out.contains("200 OK"), "{loris_out}");
    assert!(!tunnel_out.contains("200 OK"), "{tunnel_out}");
    let mut b = [0u8; 1];
    let dns_closed = tokio::time::timeout(Duration::from_secs(8), dns_loris.read(&mut b)).await;
    assert!(
        matches!(dns_closed, Ok(Ok(0)) | Ok(Err(_))),
        "DNS kept a stalled query"
    );
    assert!(
        start.elapsed() < Duration::from_secs(9),
        "{:?}",
        start.elapsed()
    );
    assert!(served().await);
}

/// The egress connection counter for one (mode, verdict, reason).
fn connections(mode: &str, verdict: &str, reason: &str) -> u64 {
    let key = format!(
        "mcp_hub_egress_connections_total{{mode=\"{mode}\",verdict=\"{verdict}\",reason=\"{reason}\"}} "
    );
    mcp_hub::telemetry::metrics::render()
        .lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .map_or(0, |v| v.trim().parse::<f64>().unwrap() as u64)
}

/// Every refusal of the explicit proxy, told the same way: the status, the `X-Proxy-Error` the agent
/// sees and the connection metric's labels (the audit line is written from the same `Outcome` value in
/// `ConnCtx::emit`). One table, one hub; each row one connection the proxy refuses.
#[tokio::test]
async fn every_egress_refusal_is_told_and_counted_alike() {
    let (hub, proxy) = hub("\"127.0.0.0/8\", \"::1/128\"").await;
    hub.devbox_with_policy("agent", &["127.0.0.1"], "agents", &[]);
    let echo = echo_server().await;
    let p = http_origin().await.port();
    let ok_host = format!("Host: localhost:{p}\r\n");

    // (what, source address, request, status, verdict, reason)
    let rows: Vec<(&str, &str, String, u16, &str, &str)> = vec![
        (
            "name not listed",
            "127.0.0.1",
            connect("github.com:443"),
            403,
            "deny",
            "not_in_allowed_hostnames",
        ),
        (
            "raw IP",
            "127.0.0.1",
            connect(&format!("127.0.0.3:{}", echo.port())),
            403,
            "deny",
            "raw_ip",
        ),
        (
            "own address",
            "127.0.0.1",
            connect(&format!("127.0.0.1:{}", echo.port())),
            403,
            "deny",
            "devbox_to_devbox_not_allowed",
        ),
        (
            "loop",
            "127.0.0.1",
            connect(&format!("localhost:{}", proxy.port())),
            403,
            "deny",
            "loop_to_hub",
        ),
        (
            "unparseable host",
            "127.0.0.1",
            connect("[::1:443"),
            400,
            "deny",
            "invalid_host",
        ),
        (
            "name that does not resolve",
            "127.0.0.1",
            connect("nx.example.org:443"),
            403,
            "deny",
            "resolve_failed",
        ),
        (
            "nothing listening",
            "127.0.0.1",
            connect("127.0.0.2:1"),
            502,
            "error",
            "upstream_unreachable",
        ),
        (
            "unknown source",
            "127.0.0.5",
            connect("localhost:443"),
            403,
            "deny",
            "unknown_devbox",
        ),
        (
            "absolute-form, not listed",
            "127.0.0.1",
            "GET http://github.com/ HTTP/1.1\r\nHost: github.com\r\n\r\n".into(),
            403,
            "deny",
            "not_in_allowed_hostnames",
        ),
        (
            "origin-form",
            "127.0.0.1",
            format!("GET / HTTP/1.1\r\n{ok_host}\r\n"),
            400,
            "deny",
            "no_hostname",
        ),
        (
            "https absolute-form",
            "127.0.0.1",
            format!("GET https://localhost:{p}/ HTTP/1.1\r\n{ok_host}\r\n"),
            400,
            "deny",
            "no_hostname",
        ),
        (
            "target not a URL",
            "127.0.0.1",
            "GET http://[x/ HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            400,
            "deny",
            "invalid_host",
        ),
        (
            "two Hosts",
            "127.0.0.1",
            format!("GET http://localhost:{p}/ HTTP/1.1\r\n{ok_host}Host: evil.example\r\n\r\n"),
            400,
            "deny",
            "ambiguous_request",
        ),
        (
            "obs-fold",
            "127.0.0.1",
            format!("GET http://localhost:{p}/ HTTP/1.1\r\n{ok_host}X-F: a\r\n b\r\n\r\n"),
            400,
            "deny",
            "malformed_request",
        ),
    ];
    for (what, source, request, status, verdict, reason) in rows {
        let before = connections("explicit", verdict, reason);
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{source}:0").parse().unwrap()).unwrap();
        let mut s = sock.connect(proxy).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let resp = read_all(&mut s, String::new()).await;
        assert!(
            resp.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {resp}"
        );
        assert!(
            resp.contains(&format!("X-Proxy-Error: {reason}\r\n")),
            "{what}: {resp}"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        while connections("explicit", verdict, reason) == before {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: {verdict}/{reason} not counted"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            connections("explicit", verdict, reason),
            before + 1,
            "{what}"
        );
    }
}
