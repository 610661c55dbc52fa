//! The gateway's JSON-RPC peeks on agent bodies, and the tools/list rewriter on upstream results.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_hub::policy::tools::ToolFilter;
use mcp_hub::mcp::jsonrpc::{filter_tools_any, join, parse_messages, retain_allowed};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = parse_messages(data) {
        let items: Vec<_> = m.items.iter().collect();
        let body = join(&items, m.batch);
        // What is forwarded is well-formed JSON again. (Well-formed, not within f64: a batch element
        // that is no message, such as 4.9e99932, is forwarded as sent; the fuzzer found that.)
        let _: Box<serde_json::value::RawValue> =
            serde_json::from_slice(&body).expect("join produced malformed JSON");
    }
    if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(data) {
        let filter =
            ToolFilter::new(&["github.get_*".to_string(), "x?y".to_string()]).expect("patterns");
        filter_tools_any(&mut v, &mut |p| retain_allowed(p.tools, &filter), true);
        // SECURITY: after rewriting, no listed tool is one the filter refuses.
        let results: Vec<&serde_json::Value> = match &v {
            serde_json::Value::Array(a) => a.iter().collect(),
            one => vec![one],
        };
        for r in results {
            if let Some(tools) = r
                .get("result")
                .and_then(|r| r.get("tools"))
                .and_then(|t| t.as_array())
            {
                for t in tools {
                    let name = t
                        .get("name")
                        .and_then(|n| n.as_str())
                        .expect("a kept tool has a name");
                    assert!(filter.allows(name), "{name:?} kept");
                }
            }
        }
    }
});
