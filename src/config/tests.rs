use super::*;

fn parse_ok(s: &str) -> Config {
    parse(s, Path::new("/etc/mcp-hub/hub.toml")).unwrap()
}

fn issues(s: &str) -> Vec<String> {
    match parse(s, Path::new("/etc/mcp-hub/hub.toml")) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e
            .issues()
            .iter()
            .map(|i| format!("{}: {}", i.path, i.message))
            .collect(),
    }
}

const MINIMAL: &str = r#"
version = 1
[gateway]
url = "https://mcp.hub.internal/mcp"
[[mcp_configs]]
name = "github"
endpoint = "https://api.example.com/mcp"
allowed_tools = ["github.search_*", "github.get_*"]
"#;

#[test]
fn minimal_config_defaults() {
    let c = parse_ok(MINIMAL);
    assert_eq!(c.gateway.host, "mcp.hub.internal");
    assert_eq!(c.gateway.path, "/mcp");
    assert_eq!(c.paths.state_dir, PathBuf::from("/var/lib/mcp-hub"));
    assert_eq!(
        c.paths.secrets_file,
        PathBuf::from("/var/lib/mcp-hub/secrets.toml")
    );
    let g = &c.mcp_configs[0];
    assert!(g.id.starts_with("mcp_"));
    assert_eq!(g.credential.header, http::header::AUTHORIZATION);
    assert!(g.allowed_tools.allows("github.get_issue"));
    assert!(!g.allowed_tools.allows("github.create_issue"));
}

#[test]
fn relative_paths_are_anchored_at_the_config_file() {
    let c = parse_ok(&format!("{MINIMAL}\n[hub]\nstate_dir = \"state\"\n"));
    assert_eq!(c.paths.state_dir, PathBuf::from("/etc/mcp-hub/state"));
}

#[test]
fn version_is_checked_first() {
    assert_eq!(
        issues("[gateway]\nurl='x'"),
        vec!["version: is required; add `version = 1` at the top"]
    );
    assert_eq!(
        issues("version = 2"),
        vec!["version: 2 is not supported; this build reads version = 1"]
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let got = issues(
        r#"
version = 1
tyop = 1
[gateway]
url = "http://mcp.hub.internal/mcp"
listen = "nope"
[[mcp_configs]]
name = "github"
endpoint = "ftp://x"
allowed_tools = ["ok", "bad["]
[[mcp_configs]]
name = "github"
endpoint = "https://user:pw@x/mcp"
allowed_tools = ["*"]
[[mcp_configs]]
name = "slack"
endpoint = "https://x/mcp"
alowed_tools = ["*"]
"#,
    );
    let want = [
        "tyop: unknown key",
        "gateway.listen: \"nope\" is not an address:port",
        "gateway.url: \"http://mcp.hub.internal/mcp\": must be an https:// URL",
        "mcp_configs[2]: unknown field `alowed_tools`",
        "mcp_configs[0].endpoint: \"ftp://x\": must be an http:// or https:// URL",
        "mcp_configs[0].allowed_tools[1]: \"bad[\": invalid glob",
        "mcp_configs[1].name: \"github\" is used by another mcp_config",
        "mcp_configs[1].endpoint: \"https://user:pw@x/mcp\": must not contain user:password@",
    ];
    for w in want {
        assert!(
            got.iter().any(|g| g.starts_with(w)),
            "missing {w:?} in {got:#?}"
        );
    }
    assert_eq!(got.len(), want.len(), "{got:#?}");
}

#[test]
fn credential_placement_is_validated() {
    let base = MINIMAL.replace(
        "allowed_tools = [\"github.search_*\", \"github.get_*\"]",
        "allowed_tools = [\"*\"]\ncredential = { header = \"X-API-Key\", value = \"{secret}\" }",
    );
    let c = parse_ok(&base);
    assert_eq!(c.mcp_configs[0].credential.header.as_str(), "x-api-key");
    let bad = base.replace("value = \"{secret}\"", "value = \"Token\"");
    assert!(issues(&bad)[0].contains("must contain {secret} exactly once"));
    let bad = base.replace("X-API-Key", "Host");
    assert!(issues(&bad)[0].contains("managed by the hub"));
}

#[test]
fn syntax_errors_do_not_echo_the_file() {
    let got = issues("version = 1\nsecret = \"hunter2\n");
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("line 2: TOML syntax error"), "{got:?}");
    assert!(!got[0].contains("hunter2"));
}
