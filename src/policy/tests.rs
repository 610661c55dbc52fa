use super::*;
use host::parse_host;

fn policy(allow_all: bool, hosts: &[&str]) -> NetworkPolicy {
    NetworkPolicy {
        name: "p".into(),
        allow_all,
        allowed_hostnames: hosts
            .iter()
            .map(|h| HostPattern::parse(h).unwrap())
            .collect(),
        allow_mcp_gateway: true,
        ..Default::default()
    }
}

fn env() -> Env {
    Env {
        gateway: Some((Target::Name("mcp.hub.internal".into()), 443)),
        agent_gateway: Some((Target::Name("agents.hub.internal".into()), 8443)),
        devbox_addrs: ["10.77.0.2".parse().unwrap(), "10.77.1.2".parse().unwrap()]
            .into_iter()
            .collect(),
        allowed_private_ranges: vec!["10.200.0.0/16".parse().unwrap()],
        self_addrs: [
            "10.77.0.1:15001".parse().unwrap(),
            "10.77.0.1:8443".parse().unwrap(),
        ]
        .into_iter()
        .collect(),
        self_ports: [15001, 8443, 3128].into_iter().collect(),
        host_services: vec![
            ("10.200.0.1".parse().unwrap(), Some(5432)),
            ("127.0.0.1".parse().unwrap(), Some(6379)),
        ],
    }
}

#[test]
fn decide_table() {
    use Allowance as A;
    use DenyReason as D;
    let strict = policy(
        false,
        &[
            "github.com",
            "*.githubusercontent.com",
            "pypi.org",
            "203.0.113.7",
        ],
    );
    let open = policy(true, &[]);
    let mut no_gw = strict.clone();
    no_gw.allow_mcp_gateway = false;
    let mut d2d = strict.clone();
    d2d.allow_devbox_to_devbox = true;
    let mut agent = strict.clone();
    agent.allow_agent_gateway = true;
    let e = env();
    let cases: &[(Option<&NetworkPolicy>, &str, Verdict)] = &[
        (None, "github.com", Verdict::Deny(D::NoNetworkPolicy)),
        (Some(&strict), "github.com", Verdict::Allow(A::Hostname)),
        (Some(&strict), "GitHub.com.", Verdict::Allow(A::Hostname)),
        (
            Some(&strict),
            "raw.githubusercontent.com",
            Verdict::Allow(A::Hostname),
        ),
        (
            Some(&strict),
            "githubusercontent.com",
            Verdict::Deny(D::NotInAllowedHostnames),
        ),
        (
            Some(&strict),
            "api.github.com",
            Verdict::Deny(D::NotInAllowedHostnames),
        ),
        (
            Some(&strict),
            "github.com.evil.org",
            Verdict::Deny(D::NotInAllowedHostnames),
        ),
        (Some(&strict), "93.184.216.34", Verdict::Deny(D::RawIp)),
        (Some(&strict), "2130706433", Verdict::Deny(D::RawIp)),
        (Some(&strict), "0x7f.1", Verdict::Deny(D::RawIp)),
        (Some(&strict), "169.254.169.254", Verdict::Deny(D::RawIp)),
        (
            Some(&strict),
            "[::ffff:169.254.169.254]",
            Verdict::Deny(D::RawIp),
        ),
        (Some(&strict), "203.0.113.7", Verdict::Allow(A::Hostname)),
        (
            Some(&strict),
            "mcp.hub.internal",
            Verdict::Allow(A::McpGateway),
        ),
        (
            Some(&strict),
            "MCP.hub.internal.",
            Verdict::Allow(A::McpGateway),
        ),
        (
            Some(&no_gw),
            "mcp.hub.internal",
            Verdict::Deny(D::McpGatewayNotAllowed),
        ),
        // The gateway host on another port is not the gateway.
        (
            Some(&strict),
            "mcp.hub.internal:22",
            Verdict::Deny(D::NotInAllowedHostnames),
        ),
        (
            Some(&strict),
            "agents.hub.internal:8443",
            Verdict::Deny(D::AgentGatewayNotAllowed),
        ),
        (
            Some(&agent),
            "Agents.hub.internal.:8443",
            Verdict::Allow(A::AgentGateway),
        ),
        // SECURITY: the provider itself is no longer "the agent gateway": reaching it directly takes
        // an allowed_hostnames entry (and a key in the devbox).
        (
            Some(&agent),
            "api.anthropic.com",
            Verdict::Deny(D::NotInAllowedHostnames),
        ),
        (
            Some(&agent),
            "agents.hub.internal:22",
            Verdict::Deny(D::NotInAllowedHostnames),
        ),
        (
            Some(&strict),
            "10.77.1.2",
            Verdict::Deny(D::DevboxToDevboxNotAllowed),
        ),
        (Some(&d2d), "10.77.1.2", Verdict::Allow(A::DevboxToDevbox)),
        (
            Some(&d2d),
            "[::ffff:10.77.1.2]",
            Verdict::Allow(A::DevboxToDevbox),
        ),
        (Some(&open), "anything.example", Verdict::Allow(A::AllowAll)),
        (Some(&open), "93.184.216.34", Verdict::Allow(A::AllowAll)),
        (
            Some(&open),
            "10.77.1.2",
            Verdict::Deny(D::DevboxToDevboxNotAllowed),
        ),
        (
            Some(&policy(false, &[])),
            "github.com",
            Verdict::Deny(D::NotInAllowedHostnames),
        ),
    ];
    for (p, host, want) in cases {
        let (h, port) = host::split_host_port(host, 443).unwrap();
        let t = parse_host(h).unwrap();
        assert_eq!(
            decide(*p, &e, &t, port),
            *want,
            "{host} under {:?}",
            p.map(|p| p.allow_all)
        );
    }
}

#[test]
fn admit_table() {
    use DenyReason as D;
    let e = env();
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    let host: std::collections::HashSet<IpAddr> =
        ["10.77.0.1", "10.88.0.1", "10.200.0.1", "127.0.0.1"]
            .iter()
            .map(|s| ip(s))
            .collect();
    type Case<'a> = (Allowance, &'a [&'a str], u16, Result<(), D>);
    let cases: &[Case<'_>] = &[
        (Allowance::Hostname, &["140.82.112.3"], 443, Ok(())),
        (
            Allowance::Hostname,
            &["140.82.112.3", "2606:50c0::1"],
            443,
            Ok(()),
        ),
        // DNS answers pointing inside: refused, even mixed with public addresses.
        // SECURITY: the host itself, on any port, by any of its addresses (an interface's, loopback,
        // the unspecified address, IPv4 inside IPv6), even inside an operator-allowed range.
        (
            Allowance::Hostname,
            &["127.0.0.1"],
            443,
            Err(D::HostAddress),
        ),
        (
            Allowance::AllowAll,
            &["127.8.9.10"],
            22,
            Err(D::HostAddress),
        ),
        (Allowance::AllowAll, &["0.0.0.0"], 22, Err(D::HostAddress)),
        (Allowance::AllowAll, &["::1"], 22, Err(D::HostAddress)),
        (Allowance::AllowAll, &["10.88.0.1"], 22, Err(D::HostAddress)),
        (
            Allowance::AllowAll,
            &["::ffff:10.88.0.1"],
            22,
            Err(D::HostAddress),
        ),
        (
            Allowance::Hostname,
            &["10.200.0.1"],
            22,
            Err(D::HostAddress),
        ),
        (
            Allowance::Hostname,
            &["140.82.112.3", "10.200.0.1"],
            443,
            Err(D::HostAddress),
        ),
        // ...unless the operator listed that service.
        (Allowance::Hostname, &["10.200.0.1"], 5432, Ok(())),
        (Allowance::Hostname, &["127.0.0.1"], 6379, Ok(())),
        (
            Allowance::Hostname,
            &["140.82.112.3", "10.0.0.5"],
            443,
            Err(D::PrivateAddress),
        ),
        (
            Allowance::Hostname,
            &["169.254.169.254"],
            80,
            Err(D::PrivateAddress),
        ),
        (
            Allowance::Hostname,
            &["::ffff:169.254.169.254"],
            80,
            Err(D::PrivateAddress),
        ),
        (
            Allowance::Hostname,
            &["64:ff9b::a9fe:a9fe"],
            80,
            Err(D::PrivateAddress),
        ),
        (
            Allowance::AllowAll,
            &["100.64.1.1"],
            443,
            Err(D::PrivateAddress),
        ),
        (
            Allowance::AllowAll,
            &["fd00::1"],
            443,
            Err(D::PrivateAddress),
        ),
        // The operator's allowance.
        (Allowance::Hostname, &["10.200.3.4"], 443, Ok(())),
        // Devbox to devbox is private by nature.
        (Allowance::DevboxToDevbox, &["10.77.1.2"], 22, Ok(())),
        (
            Allowance::DevboxToDevbox,
            &["10.9.9.9"],
            22,
            Err(D::PrivateAddress),
        ),
        // Loops to the hub's own listeners.
        (
            Allowance::AllowAll,
            &["10.77.0.1"],
            15001,
            Err(D::LoopToHub),
        ),
        (Allowance::AllowAll, &["127.0.0.1"], 8443, Err(D::LoopToHub)),
        (Allowance::Hostname, &[], 443, Err(D::ResolveFailed)),
    ];
    for (a, addrs, port, want) in cases {
        let addrs: Vec<IpAddr> = addrs.iter().map(|s| ip(s)).collect();
        let got =
            admit(*a, &e, &host, &addrs, *port).map(|ok| assert_eq!(ok.addrs().len(), addrs.len()));
        assert_eq!(got, *want, "{addrs:?}:{port}");
    }
}

#[test]
fn reason_codes_are_stable() {
    assert_eq!(
        DenyReason::NotInAllowedHostnames.as_str(),
        "not_in_allowed_hostnames"
    );
    assert_eq!(DenyReason::PrivateAddress.as_str(), "private_address");
    assert_eq!(
        DenyReason::McpGatewayNotAllowed.as_str(),
        "mcp_gateway_not_allowed"
    );
    assert_eq!(DenyReason::RawIp.as_str(), "raw_ip");
}
