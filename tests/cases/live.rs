//! A running hub honours token and config changes within a second, and refuses invalid edits.

use std::time::Duration;

use http::StatusCode;
use mcp_hub::ops::edit::{self, Workspace, devbox, mcp_config};
use serde_json::json;

use crate::support::client::Client;
use crate::support::{Hub, Upstream};

/// `mcp-config update NAME [--allowed-tools T] [--description D]`.
fn update(
    ws: &mut Workspace,
    name: &str,
    allowed_tools: Option<Vec<String>>,
    description: Option<String>,
) -> Result<edit::Done, edit::ManageError> {
    let name = name.into();
    let endpoint = None;
    mcp_config::Update {
        name,
        allowed_tools,
        description,
        endpoint,
        pin_tools: None,
    }
    .apply(ws)
}

/// `devbox revoke box ENV`.
fn revoke(ws: &mut Workspace, env_var: &str) {
    let env_var = Some(env_var.into());
    devbox::Revoke {
        name: "box".into(),
        env_var,
    }
    .apply(ws)
    .unwrap();
}

/// Revoke devbox `box`'s binding `var` and wait until `token` is refused; fails if that takes a second.
async fn revoke_within_a_second(hub: &Hub, c: &Client, var: &str, token: &str) {
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    hub.edit(|ws| revoke(ws, var));
    let took =
        Hub::eventually(|| async { c.post(token, &ping).await.status == StatusCode::UNAUTHORIZED })
            .await;
    assert!(took < Duration::from_secs(1), "revocation took {took:?}");
}

#[tokio::test]
async fn revocation_rotation_and_new_tokens_apply_within_a_second() {
    let up = Upstream::start(&["a", "b"], "Bearer k").await;
    let hub = Hub::start(&[("srv", &up.url(), &["*"])]).await;
    hub.secret("S", "k");
    let env = hub.devbox("box", &[], &["ONE=srv:S", "TWO=srv:S"]);
    let c = hub.client();
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    assert_eq!(c.post(&env["ONE"], &ping).await.status, StatusCode::OK);

    // Revoke one binding: it stops within a second, the other keeps working.
    revoke_within_a_second(&hub, &c, "ONE", &env["ONE"]).await;
    assert_eq!(c.post(&env["TWO"], &ping).await.status, StatusCode::OK);

    // Rotate TWO: the old token dies, the new one works.
    let new_two = hub.edit(|ws| {
        let two = devbox::Binding {
            name: "box".into(),
            env_var: "TWO".into(),
        };
        two.rotate(ws).unwrap();
        devbox::env(ws, "box")
            .unwrap()
            .into_iter()
            .find(|(k, _)| k == "TWO")
            .unwrap()
            .1
    });
    assert_ne!(new_two, env["TWO"]);
    let took =
        Hub::eventually(|| async { c.post(&new_two, &ping).await.status == StatusCode::OK }).await;
    assert!(took < Duration::from_secs(1), "rotation took {took:?}");
    assert_eq!(
        c.post(&env["TWO"], &ping).await.status,
        StatusCode::UNAUTHORIZED
    );

    // A devbox created while running works within a second.
    let later = hub.devbox("later", &[], &["X=srv:S"]);
    let took =
        Hub::eventually(|| async { c.post(&later["X"], &ping).await.status == StatusCode::OK })
            .await;
    assert!(took < Duration::from_secs(1), "new token took {took:?}");
}

/// SECURITY: a connection remembers the token it verified (so later requests skip the MAC check); that
/// memory must never outlive a revocation or let one connection's token vouch for another. One h2
/// connection carries every request here.
#[tokio::test]
async fn a_reused_connection_honours_revocation_and_each_token() {
    let up = Upstream::start(&["a"], "Bearer k").await;
    let hub = Hub::start(&[("srv", &up.url(), &["*"])]).await;
    hub.secret("S", "k");
    let env = hub.devbox("box", &[], &["ONE=srv:S", "TWO=srv:S"]);
    let c = hub.client_h2();
    let ping = json!({"jsonrpc":"2.0","id":1,"method":"ping"});
    for _ in 0..3 {
        assert_eq!(c.post(&env["ONE"], &ping).await.status, StatusCode::OK);
    }
    // A different token on the same connection is checked on its own, and a near miss of the
    // remembered one is refused.
    assert_eq!(c.post(&env["TWO"], &ping).await.status, StatusCode::OK);
    let mut forged = env["ONE"].clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        c.post(&forged, &ping).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(c.post(&env["ONE"], &ping).await.status, StatusCode::OK);

    revoke_within_a_second(&hub, &c, "ONE", &env["ONE"]).await;
    // Once refused, refused on every later request too (nothing remembered it).
    for _ in 0..3 {
        assert_eq!(
            c.post(&env["ONE"], &ping).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(c.post(&env["TWO"], &ping).await.status, StatusCode::OK);
}

#[tokio::test]
async fn config_edits_apply_live_and_invalid_edits_are_refused() {
    let up = Upstream::start(&["github.get_issue", "github.create_issue"], "Bearer k").await;
    let hub = Hub::start(&[("github", &up.url(), &["github.get_*"])]).await;
    hub.secret("S", "k");
    let t = hub.devbox("box", &[], &["G=github:S"])["G"].clone();
    let c = hub.client();
    assert_eq!(c.list_all(&t).await, ["github.get_issue"]);
    hub.edit(|ws| {
        update(ws, "github", Some(vec!["github.*".into()]), None).unwrap();
    });
    let took = Hub::eventually(|| async { c.list_all(&t).await.len() == 2 }).await;
    assert!(took < Duration::from_secs(1), "edit took {took:?}");

    // The CLI layer refuses to write an invalid config...
    let e = hub.edit(|ws| update(ws, "github", Some(vec!["bad[".into()]), None).unwrap_err());
    assert!(e.to_string().contains("invalid configuration"), "{e}");
    // ...and a hand edit that breaks the file leaves the old config serving.
    let good = std::fs::read_to_string(&hub.config_file).unwrap();
    std::fs::write(&hub.config_file, good.replace("github.*", "bad[")).unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        c.list_all(&t).await.len(),
        2,
        "old config must keep serving"
    );
    // Deleting a config in use is refused without --force; the comments in hub.toml survive edits.
    std::fs::write(&hub.config_file, format!("# operator comment\n{good}")).unwrap();
    hub.edit(|ws| {
        let d = edit::Delete {
            name: "github".into(),
            force: false,
        };
        let e = mcp_config::delete(d, ws).unwrap_err();
        assert!(e.to_string().contains("box/G"), "{e}");
        update(ws, "github", None, Some("described".into())).unwrap();
    });
    let text = std::fs::read_to_string(&hub.config_file).unwrap();
    assert!(text.starts_with("# operator comment\n"), "{text}");
    assert!(text.contains("description = \"described\""));
}

#[tokio::test]
async fn revoking_a_token_ends_its_open_streams() {
    use http_body_util::BodyExt;
    let up = Upstream::start(&["a"], "Bearer k").await;
    let hub = Hub::start(&[("srv", &up.url(), &["*"])]).await;
    hub.secret("S", "k");
    let env = hub.devbox("box", &[], &["ONE=srv:S"]);
    let c = hub.client();
    let resp = c
        .send(c.request(
            http::Method::GET,
            Some(&env["ONE"]),
            &[("last-event-id", "long")],
            "",
        ))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    // The stream is flowing.
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    let revoked_at = std::time::Instant::now();
    hub.edit(|ws| revoke(ws, "ONE"));
    // It ends within a second of the revocation, long before the upstream would end it (5 s).
    while let Some(f) = tokio::time::timeout(Duration::from_secs(3), body.frame())
        .await
        .expect("stream still open 3 s after revocation")
    {
        if f.is_err() {
            break;
        }
    }
    assert!(
        revoked_at.elapsed() < Duration::from_millis(1500),
        "{:?}",
        revoked_at.elapsed()
    );
}

#[tokio::test]
async fn reloads_under_load_fail_no_request() {
    let up = Upstream::start(&["x.get"], "Bearer k").await;
    let hub = Hub::start(&[("srv", &up.url(), &["x.*"])]).await;
    hub.secret("S", "k");
    let t = hub.devbox("box", &[], &["T=srv:S"])["T"].clone();
    let c = std::sync::Arc::new(hub.client());
    let probe = move || {
        let (c, t) = (c.clone(), t.clone());
        async move {
            let r = c.post(&t, &json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x.get","arguments":{}}})).await;
            r.status == StatusCode::OK && r.json().get("result").is_some()
        }
    };
    let (ok, failed) = hub
        .edits_under_load(probe, |ws, i| {
            update(ws, "srv", None, Some(format!("edit {i}"))).unwrap();
        })
        .await;
    assert!(ok > 20, "the load ran ({ok} calls)");
    assert_eq!(
        failed,
        0,
        "{failed} of {} calls failed across 10 reloads",
        ok + failed
    );
}
