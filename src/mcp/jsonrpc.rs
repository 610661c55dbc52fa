//! The little of JSON-RPC 2.0 the gateway needs: classify messages, build error responses, and apply the
//! tool filter to results.

use serde_json::{Value, json};

use super::filter::ToolFilter;

/// JSON-RPC / MCP error codes the hub itself emits.
pub mod code {
    /// Invalid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// Bad params; also "Unknown tool" per the MCP spec.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Hub-side failure talking to the upstream.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Session not found / not yours.
    pub const SESSION_NOT_FOUND: i64 = -32001;
    /// 2026-07-28 `HeaderMismatch`.
    pub const HEADER_MISMATCH: i64 = -32020;
}

/// A JSON-RPC error response.
pub fn error(id: Value, code: i64, message: impl Into<String>, data: Option<Value>) -> Value {
    let mut e = json!({"code": code, "message": message.into()});
    if let Some(d) = data {
        e["data"] = d;
    }
    json!({"jsonrpc": "2.0", "id": id, "error": e})
}

/// Whether a message is a request (has `method` and `id`).
pub fn is_request(v: &Value) -> bool {
    v.get("method").is_some() && v.get("id").is_some_and(|id| !id.is_null())
}

/// A request's method.
pub fn method(v: &Value) -> Option<&str> {
    v.get("method")?.as_str()
}

/// `params.name` of a message, if a string.
pub fn param_name(v: &Value) -> Option<&str> {
    v.get("params")?.get("name")?.as_str()
}

/// Filter a `tools/list`-shaped result in place; returns whether anything changed.
///
/// The result is recognised by shape (`result.tools` is an array), not by remembering request ids, so a
/// list delivered on a resumed stream is filtered too. `nextCursor` is kept: a page may become short or
/// empty, but pagination still reaches every page.
/// SECURITY: this and `tools/call` screening both use `ToolFilter::allows`.
pub fn filter_tools_result(msg: &mut Value, filter: &ToolFilter, private_cache: bool) -> bool {
    let Some(result) = msg.get_mut("result").and_then(Value::as_object_mut) else {
        return false;
    };
    let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) else {
        return false;
    };
    tools.retain(|t| {
        t.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| filter.allows(n))
    });
    if private_cache || result.contains_key("cacheScope") || result.contains_key("ttlMs") {
        // The list is filtered per token: no shared cache may serve it to anyone else.
        result.insert("cacheScope".into(), Value::from("private"));
    }
    true
}

/// Apply `filter_tools_result` to a single message or each element of a batch.
pub fn filter_tools_any(msg: &mut Value, filter: &ToolFilter, private_cache: bool) -> bool {
    match msg {
        Value::Array(items) => items.iter_mut().fold(false, |acc, m| {
            filter_tools_result(m, filter, private_cache) | acc
        }),
        other => filter_tools_result(other, filter, private_cache),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_pages_and_keeps_cursor() {
        let f = ToolFilter::new(&["github.get_*".to_string()]).unwrap();
        let mut m = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[
            {"name":"github.get_issue"},{"name":"github.create_issue"},{"name":42}],"nextCursor":"abc"}});
        assert!(filter_tools_result(&mut m, &f, false));
        assert_eq!(m["result"]["tools"], json!([{"name":"github.get_issue"}]));
        assert_eq!(m["result"]["nextCursor"], "abc");
        assert!(m["result"].get("cacheScope").is_none());
        let mut empty =
            json!({"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"x"}],"nextCursor":""}});
        filter_tools_result(&mut empty, &f, true);
        assert_eq!(empty["result"]["tools"], json!([]));
        assert_eq!(empty["result"]["nextCursor"], "");
        assert_eq!(empty["result"]["cacheScope"], "private");
    }

    #[test]
    fn non_list_messages_are_untouched() {
        let f = ToolFilter::new(&[]).unwrap();
        let mut m =
            json!({"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"tools"}]}});
        let before = m.clone();
        assert!(!filter_tools_result(&mut m, &f, true));
        assert_eq!(m, before);
    }
}
