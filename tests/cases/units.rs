//! The appliance's packaging: systemd units verify and score well, and the install script is idempotent.

use std::process::Command;

use crate::support::BIN;

fn repo(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found || std::env::var_os("CI").is_none(),
        "CI must provide {tool}"
    );
    found
}

/// The units, pointed at the built binary so `verify` can check every Exec line.
fn units(dir: &std::path::Path) -> Vec<String> {
    ["mcp-hub.service", "mcp-hub-firewall.service"]
        .iter()
        .map(|u| {
            let text = std::fs::read_to_string(repo(&format!("systemd/{u}")))
                .unwrap()
                .replace("/usr/bin/mcp-hub", BIN);
            let p = dir.join(u);
            std::fs::write(&p, text).unwrap();
            p.to_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn systemd_units_verify_and_are_hardened() {
    if !have("systemd-analyze") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let u = units(d.path());
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .args(&u)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.trim().is_empty(),
        "systemd-analyze verify: {err}"
    );
    let o = Command::new("systemd-analyze")
        .args(["security", "--offline=true", &u[0]])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let score: f64 = out
        .lines()
        .find_map(|l| l.split("exposure level for mcp-hub.service: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {out}"));
    // README records the score; a change that loosens the sandbox must be deliberate.
    assert!(
        score <= 1.6,
        "exposure {score} (README says 1.6 or better)\n{out}"
    );
    let unit = std::fs::read_to_string(&u[0]).unwrap();
    for want in [
        "Type=notify",
        "RestartPreventExitStatus=64 78",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    ] {
        assert!(unit.contains(want), "{want}");
    }
}

#[test]
fn install_script_is_idempotent() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_str().unwrap();
    let install = || {
        Command::new("bash")
            .args([&repo("scripts/install.sh"), "--root", r, "--binary", BIN])
            .output()
            .unwrap()
    };
    let tree = || {
        let o = Command::new("sh").args(["-c", &format!("cd {r} && find . -printf '%p %m %s\\n' | sort && find . -type f -exec sha256sum {{}} + | sort")]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let first = install();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let after_first = tree();
    // An operator edit to the config survives reinstalls.
    let cfg = root.path().join("etc/mcp-hub/hub.toml");
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg).unwrap() + "\n# operator edit\n",
    )
    .unwrap();
    let after_edit = tree();
    let second = install();
    assert!(second.status.success());
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(out.contains("\n0 change(s)."), "{out}");
    assert_eq!(tree(), after_edit, "a second run must change nothing");
    assert_ne!(after_first, after_edit);
    let mode = |p: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(root.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("var/lib/mcp-hub"), 0o700);
    assert_eq!(mode("etc/mcp-hub/hub.toml"), 0o640);
    assert_eq!(mode("usr/bin/mcp-hub"), 0o755);
    let o = Command::new("bash")
        .args([&repo("scripts/uninstall.sh"), "--root", r])
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(!root.path().join("usr/bin/mcp-hub").exists());
    assert!(
        cfg.exists(),
        "uninstall keeps configuration without --purge"
    );
}
