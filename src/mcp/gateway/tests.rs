use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

use http::HeaderName;
use serde_json::json;

#[test]
fn metadata_headers_table() {
    let call =
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"github.get_issue"}});
    let m = "2026-07-28";
    let cases: &[(&[(&str, &str)], bool)] = &[
        (
            &[
                ("mcp-protocol-version", m),
                ("mcp-method", "tools/call"),
                ("mcp-name", "github.get_issue"),
            ],
            true,
        ),
        // Base64 sentinel form decodes before comparison.
        (
            &[
                ("mcp-protocol-version", m),
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?Z2l0aHViLmdldF9pc3N1ZQ==?="),
            ],
            true,
        ),
        // Header says an allowed tool, body calls another: refused.
        (
            &[
                ("mcp-protocol-version", m),
                ("mcp-method", "tools/call"),
                ("mcp-name", "github.search_code"),
            ],
            false,
        ),
        (
            &[
                ("mcp-protocol-version", m),
                ("mcp-method", "tools/list"),
                ("mcp-name", "github.get_issue"),
            ],
            false,
        ),
        // Required on the modern revision.
        (
            &[("mcp-protocol-version", m), ("mcp-method", "tools/call")],
            false,
        ),
        (&[("mcp-protocol-version", m)], false),
        // Optional on legacy revisions, but must agree when present.
        (&[("mcp-protocol-version", "2025-11-25")], true),
        (
            &[
                ("mcp-protocol-version", "2025-11-25"),
                ("mcp-name", "other"),
            ],
            false,
        ),
    ];
    // The revision is read from the headers once per request, as `handle` does.
    let check = |h: &HeaderMap, m: &jsonrpc::Messages<'_>| {
        let seen = ClientHeaders::of(h);
        check_metadata_headers(&seen, is_modern(&seen), m)
    };
    let body = call.to_string();
    let msgs = jsonrpc::parse_messages(body.as_bytes()).unwrap();
    for (h, ok) in cases {
        assert_eq!(check(&headers(h), &msgs).is_ok(), *ok, "{h:?}");
    }
    let batch = json!([call.clone()]).to_string();
    let batch = jsonrpc::parse_messages(batch.as_bytes()).unwrap();
    assert!(check(&headers(&[("mcp-protocol-version", m)]), &batch).is_err());
    assert!(check(&headers(&[("mcp-protocol-version", "2025-03-26")]), &batch).is_ok());
}

#[test]
fn content_type_must_be_json() {
    let json = |h: &HeaderMap| is_json(&ClientHeaders::of(h));
    assert!(json(&headers(&[(
        "content-type",
        "application/json; charset=utf-8"
    )])));
    assert!(!json(&headers(&[("content-type", "text/plain")])));
    assert!(!json(&HeaderMap::new()));
}
