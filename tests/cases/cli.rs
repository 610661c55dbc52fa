//! The real binary: exit codes, check, and the demo's printed commands run as printed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{BIN, cli};

#[test]
fn exit_codes_follow_sysexits() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/conf/hub.toml");
    let ok = Command::new(BIN)
        .args(["--config", conf, "check"])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let usage = Command::new(BIN)
        .args(["devbox", "create"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(64));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("hub.toml");
    std::fs::write(
        &bad,
        "version = 1\ntypo = true\n[gateway]\nurl = \"http://x/mcp\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--config", bad.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("typo: unknown key") && err.contains("gateway.url"),
        "{err}"
    );
    // `run` fails the same way, before binding anything.
    let out = Command::new(BIN)
        .args(["--config", bad.to_str().unwrap(), "run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    // A missing config file points to `init`, which writes one that the next edit accepts.
    let fresh = dir.path().join("etc/hub.toml");
    let fresh = fresh.to_str().unwrap();
    let state = dir.path().join("state");
    let edit = [
        "--config",
        fresh,
        "mcp-config",
        "create",
        "--name",
        "github",
        "--endpoint",
        "https://api.githubcopilot.com/mcp/",
        "--allowed-tools",
        "get_*",
    ];
    let out = Command::new(BIN).args(edit).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("`mcp-hub --config {fresh} init`")),
        "{err}"
    );
    let init = [
        "--config",
        fresh,
        "init",
        "--state-dir",
        state.to_str().unwrap(),
    ];
    let out = Command::new(BIN).args(init).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN).args(edit).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN).args(init).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "init never replaces a config");
    // A malformed argument is a usage error, not a conflict.
    let mut bad_name = Command::new(BIN)
        .args(["--config", fresh, "secret", "create", "no spaces"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(bad_name.stdin.take());
    let out = bad_name.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secret names must be"), "{err}");
}

#[test]
fn secrets_come_from_stdin_and_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hub.toml");
    std::fs::write(&cfg, "version = 1\n[hub]\nstate_dir = \"state\"\n[gateway]\nurl = \"https://mcp.hub.internal/mcp\"\n").unwrap();
    let c = cfg.to_str().unwrap();
    let mut child = Command::new(BIN)
        .args(["--config", c, "secret", "create", "GH"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"ghp_very_secret\n").unwrap();
    assert!(child.wait().unwrap().success());
    let list = Command::new(BIN)
        .args(["--config", c, "--json", "secret", "list"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("\"GH\"") && !text.contains("ghp_very_secret"),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("state/secrets.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let create = Command::new(BIN)
        .args([
            "--config",
            c,
            "mcp-config",
            "create",
            "--name",
            "github",
            "--endpoint",
            "https://api.example.com/mcp",
            "--allowed-tools",
            "github.get_*",
        ])
        .output()
        .unwrap();
    assert!(
        create.status.success(),
        "{}",
        String::from_utf8_lossy(&create.stderr)
    );
    let dev = Command::new(BIN)
        .args([
            "--config",
            c,
            "devbox",
            "create",
            "box",
            "--mcp",
            "GITHUB_MCP_SECRET=github:GH",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&dev.stdout);
    assert!(
        out.contains("RL_MCP_URL=https://mcp.hub.internal/mcp\nGITHUB_MCP_SECRET=mcph_"),
        "{out}"
    );
    let env = Command::new(BIN)
        .args(["--config", c, "devbox", "env", "box"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&env.stdout),
        out,
        "env prints the same lines again"
    );
    let del = Command::new(BIN)
        .args(["--config", c, "mcp-config", "delete", "github"])
        .output()
        .unwrap();
    assert_eq!(del.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&del.stderr).contains("--force"));
}

#[test]
fn demo_prints_commands_that_work_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--dir",
            dir.path().to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(20) {
        let l = lines.next().unwrap().unwrap();
        out.push_str(&l);
        out.push('\n');
        if l.starts_with("Press Ctrl-C") {
            break;
        }
    }
    let script: String = out
        .lines()
        .filter(|l| l.starts_with("export ") || l.starts_with("curl "))
        .map(|l| format!("{l}\necho\n"))
        .collect();
    // The management line works as printed for a newcomer who has no mcp-hub on PATH.
    let manage = out
        .lines()
        .skip_while(|l| !l.starts_with("# Manage it"))
        .nth(1)
        .unwrap()
        .to_string();
    let listed = Command::new("sh")
        .args(["-c", &manage])
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(
        listed.status.success() && String::from_utf8_lossy(&listed.stdout).contains("demo"),
        "{manage}: {}{}",
        String::from_utf8_lossy(&listed.stdout),
        String::from_utf8_lossy(&listed.stderr)
    );
    let run = Command::new("bash")
        .args(["-euc", &script])
        .output()
        .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = child.wait().unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let replies: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replies.len(), 4, "{stdout}");
    let names: Vec<&str> = replies[0]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["github.search_code", "github.get_issue"]);
    assert!(
        replies[1]["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("Welcome")
    );
    assert_eq!(
        replies[2]["error"]["message"],
        "Unknown tool: github.delete_repo"
    );
    // The model call through the agent gateway, answered by the sample model with the key the hub
    // injected.
    assert_eq!(replies[3]["type"], "message", "{stdout}");
    assert!(
        replies[3]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("through the agent gateway")
    );
    assert!(out.contains("export ANTHROPIC=gwh_"), "{out}");
    assert!(out.contains("claude mcp add github --transport http \"$RL_MCP_URL\" --header \"Authorization: Bearer $GITHUB_MCP_SECRET\""));
    // A DNS name: Claude Code's TLS stack rejects CAs with IP-address name constraints.
    assert!(
        out.contains("export RL_MCP_URL=https://localhost:"),
        "{out}"
    );
    assert!(
        status.success(),
        "demo should exit cleanly on SIGTERM: {status:?}"
    );
}

#[test]
fn sigkill_during_writes_never_corrupts_state() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hub.toml");
    std::fs::write(&cfg, "version = 1\n[hub]\nstate_dir = \"state\"\n[gateway]\nurl = \"https://mcp.hub.internal/mcp\"\n").unwrap();
    let c = cfg.to_str().unwrap();
    let ok = Command::new(BIN)
        .args([
            "--config",
            c,
            "mcp-config",
            "create",
            "--name",
            "g",
            "--endpoint",
            "https://x.example/mcp",
            "--allowed-tools",
            "*",
        ])
        .output()
        .unwrap();
    assert!(ok.status.success());
    let mut s = Command::new(BIN)
        .args(["--config", c, "secret", "create", "S"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(s.stdin.as_mut().unwrap(), b"v").unwrap();
    assert!(s.wait().unwrap().success());
    let mut killed = 0;
    for i in 0..40u64 {
        let mut child = Command::new(BIN)
            .args([
                "--config",
                c,
                "devbox",
                "create",
                &format!("box{i}"),
                "--mcp",
                "A=g:S",
                "--mcp",
                "B=g:S",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill at varied moments: before, during and after the writes.
        std::thread::sleep(Duration::from_micros((i * 397) % 4000));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        if !child.wait().unwrap().success() {
            killed += 1;
        }
        // Whatever happened, the state loads and validates.
        let check = Command::new(BIN)
            .args(["--config", c, "check"])
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "after kill {i}: {}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    assert!(killed > 0, "the test must actually interrupt some writers");
}

#[test]
fn network_policies_are_edited_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("hub.toml");
    std::fs::write(&cfg, "# the operator's header\nversion = 1\n[hub]\nstate_dir = \"state\"\n[gateway]\nurl = \"https://mcp.hub.internal/mcp\"\n").unwrap();
    let c = cfg.to_str().unwrap();
    let run = |args: &[&str]| cli(c, args);
    assert!(
        run(&[
            "network-policy",
            "create",
            "dev",
            "--allowed-hostnames",
            "pypi.org",
            "--allow-mcp-gateway",
            "true"
        ])
        .status
        .success()
    );
    let bad = run(&[
        "network-policy",
        "update",
        "dev",
        "--allowed-hostnames",
        "*.com",
    ]);
    assert_eq!(
        bad.status.code(),
        Some(78),
        "a wildcard over a TLD is refused"
    );
    assert!(
        run(&[
            "network-policy",
            "update",
            "dev",
            "--allow-all",
            "false",
            "--description",
            "registries"
        ])
        .status
        .success()
    );
    let text = std::fs::read_to_string(&cfg).unwrap();
    assert!(text.starts_with("# the operator's header\n"), "{text}");
    assert!(
        text.contains("allowed_hostnames = [\"pypi.org\"]")
            && text.contains("description = \"registries\""),
        "{text}"
    );
    let list = run(&["network-policy", "list"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("dev\t1 hostname pattern(s)\tmcp_gateway")
    );
    assert!(run(&["network-policy", "delete", "dev"]).status.success());
    assert!(
        !std::fs::read_to_string(&cfg)
            .unwrap()
            .contains("[[network_policies]]")
    );
}
