//! The little of JSON-RPC 2.0 the gateway needs: classify messages, build error responses, and apply the
//! tool filter to results.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use smallvec::{SmallVec, smallvec};

use crate::policy::tools::ToolFilter;

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
    /// Authentication failed (the same number as `SESSION_NOT_FOUND`; the HTTP status tells them apart).
    pub const UNAUTHORIZED: i64 = -32001;
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

/// One client message, read without building a JSON tree: the fields the gateway decides on, borrowed
/// from the body, and the message's exact text so a forwarded message is the client's own bytes.
#[derive(Debug)]
pub struct Message<'a> {
    /// The message as the client sent it.
    pub raw: &'a str,
    /// `id` (`Null` when absent or null).
    pub id: Value,
    /// Whether a `method` member is present (of any type).
    pub has_method: bool,
    /// `method`, if a string.
    pub method: Option<Cow<'a, str>>,
    /// `params.name`, if `params` is an object and `name` a string.
    pub name: Option<Cow<'a, str>>,
    /// `params.uri`, likewise.
    pub uri: Option<Cow<'a, str>>,
    /// `params` is an object with a `cursor` member (a `tools/list` page after the first).
    pub has_cursor: bool,
}

impl Message<'_> {
    /// A request: has a `method` and a non-null `id`.
    pub fn is_request(&self) -> bool {
        self.has_method && !self.id.is_null()
    }

    /// `method`, if a string.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// `params.name`, if a string.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

/// A client POST body: one message or a batch.
#[derive(Debug)]
pub struct Messages<'a> {
    /// Whether the body was a JSON array.
    pub batch: bool,
    /// The messages, in order. Almost always one: kept inline, off the heap.
    pub items: SmallVec<[Message<'a>; 1]>,
}

/// Why a body is not a JSON-RPC message or batch.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyError {
    /// Not valid JSON (-32700).
    Parse(String),
    /// Valid JSON, but not a message or a non-empty batch, or ambiguous (-32600).
    Invalid(String),
}

/// A string member, or a member of any other type (kept apart so `"method": 1` is "no method", as a
/// tree lookup would see it, rather than a parse failure).
enum Text<'a> {
    Str(Cow<'a, str>),
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Text::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Text::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Text::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Text::Other)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Text::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Text::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Text::Other)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'a> Text<'a> {
    fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Self::Str(s) => Some(s),
            Self::Other => None,
        }
    }
}

/// The members of a message the gateway reads. Duplicate members are an error (serde's derive refuses
/// them), unlike a tree parser where the last one silently wins.
#[derive(Deserialize)]
struct MessagePeek<'a> {
    id: Option<Value>,
    #[serde(borrow)]
    method: Option<Text<'a>>,
    #[serde(borrow)]
    params: Option<Params<'a>>,
}

/// `params`: for an object, its `name` and `uri` members; anything else carries neither. Read in the same
/// pass as the message, so a body is scanned once.
#[derive(Default)]
struct Params<'a> {
    name: Option<Text<'a>>,
    uri: Option<Text<'a>>,
    cursor: bool,
}

impl<'de: 'a, 'a> Deserialize<'de> for Params<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Params<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Params::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Params::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Params::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Params::default())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Params::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Params::default())
            }
            // SECURITY: positional (array) params carry no name the hub could check; only an object is
            // read, exactly as a tree lookup of `params.name` would.
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                while a.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Params::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut p = Params::default();
                // Keys are compared decoded (`"na\u006de"` is `name`), as the upstream will read them.
                while let Some(key) = a.next_key::<Text<'de>>()? {
                    let slot = match key.into_str().as_deref() {
                        Some("name") => &mut p.name,
                        Some("uri") => &mut p.uri,
                        Some("cursor") => {
                            p.cursor = true;
                            a.next_value::<IgnoredAny>()?;
                            continue;
                        }
                        _ => {
                            a.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    // SECURITY: the hub and the upstream could read different names from duplicates.
                    if slot.is_some() {
                        return Err(de::Error::custom("params: duplicate member"));
                    }
                    *slot = Some(a.next_value::<Text<'de>>()?);
                }
                Ok(p)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

fn first_byte(s: &str) -> Option<u8> {
    s.bytes().find(|c| !c.is_ascii_whitespace())
}

/// Peek one message from its text in one pass; a non-object (inside a batch) is a message without
/// method. Syntax errors are parse errors; well-formed JSON the hub refuses (duplicates) is invalid.
/// SECURITY: a message or `params` object with a duplicate member is refused: the hub and the upstream
/// could otherwise read different tool names from the same bytes.
fn peek_message(raw: &str) -> Result<Message<'_>, BodyError> {
    let mut m = Message {
        raw,
        id: Value::Null,
        has_method: false,
        method: None,
        name: None,
        uri: None,
        has_cursor: false,
    };
    if first_byte(raw) != Some(b'{') {
        return Ok(m);
    }
    let p: MessagePeek<'_> = serde_json::from_str(raw).map_err(|e| {
        if e.is_data() {
            BodyError::Invalid(format!("Invalid Request: {e}"))
        } else {
            BodyError::Parse(format!("Parse error: {e}"))
        }
    })?;
    m.id = p.id.unwrap_or(Value::Null);
    m.has_method = p.method.is_some();
    m.method = p.method.and_then(Text::into_str);
    if let Some(params) = p.params {
        m.name = params.name.and_then(Text::into_str);
        m.uri = params.uri.and_then(Text::into_str);
        m.has_cursor = params.cursor;
    }
    Ok(m)
}

/// Read a POST body as one JSON-RPC message or a non-empty batch.
///
/// # Errors
/// Invalid JSON, a body that is neither an object nor a non-empty array, or duplicate members.
pub fn parse_messages(body: &[u8]) -> Result<Messages<'_>, BodyError> {
    let parse = |e: serde_json::Error| BodyError::Parse(format!("Parse error: {e}"));
    let shape = || {
        BodyError::Invalid(
            "Invalid Request: expected a JSON-RPC message or a non-empty batch".into(),
        )
    };
    let text =
        std::str::from_utf8(body).map_err(|e| BodyError::Parse(format!("Parse error: {e}")))?;
    match first_byte(text) {
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(parse)?;
            if items.is_empty() {
                return Err(shape());
            }
            let items = items
                .into_iter()
                .map(|r| peek_message(r.get()))
                .collect::<Result<_, _>>()?;
            Ok(Messages { batch: true, items })
        }
        // One message: read in a single pass over the body, which must be an object.
        Some(b'{') => Ok(Messages {
            batch: false,
            items: smallvec![peek_message(
                text.trim_matches(|c: char| c.is_ascii_whitespace()),
            )?],
        }),
        _ => {
            // Not an object or array: say whether it is broken JSON or well-formed but not a message.
            serde_json::from_str::<IgnoredAny>(text).map_err(parse)?;
            Err(shape())
        }
    }
}

/// The body that forwards `items`: a single message as itself, several as a batch of their own texts.
pub fn join(items: &[&Message<'_>], batch: bool) -> Vec<u8> {
    if let ([one], false) = (items, batch) {
        return one.raw.as_bytes().to_vec();
    }
    let mut o = Vec::with_capacity(items.iter().map(|m| m.raw.len() + 1).sum::<usize>() + 2);
    o.push(b'[');
    for (i, m) in items.iter().enumerate() {
        if i > 0 {
            o.push(b',');
        }
        o.extend_from_slice(m.raw.as_bytes());
    }
    o.push(b']');
    o
}

/// A `tools/list` page for [`filter_tools_result`]'s screen: the message's id, whether the result
/// names a next page, and its tools, to keep or drop in place.
pub struct Page<'v> {
    /// The response's `id` (`Null` if none).
    pub id: &'v Value,
    /// `nextCursor` is present (and not null): more pages follow.
    pub has_next: bool,
    /// The listed tools.
    pub tools: &'v mut Vec<Value>,
}

/// Keep the tools `filter` admits by name.
pub fn retain_allowed(tools: &mut Vec<Value>, filter: &ToolFilter) {
    tools.retain(|t| {
        t.get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| filter.allows(n))
    });
}

/// Screen a `tools/list`-shaped result in place with `screen`; returns whether it was one.
///
/// The result is recognised by shape (`result.tools` is an array), not by remembering request ids, so a
/// list delivered on a resumed stream is filtered too. `nextCursor` is kept: a page may become short or
/// empty, but pagination still reaches every page.
/// SECURITY: `screen` and `tools/call` screening decide with the same rules (`ToolFilter::allows`,
/// and for pinned configs `Pins`).
pub fn filter_tools_result(
    msg: &mut Value,
    screen: &mut dyn FnMut(Page<'_>),
    private_cache: bool,
) -> bool {
    let Some(obj) = msg.as_object_mut() else {
        return false;
    };
    // Copied (a number or short string) so the result can be borrowed mutably beside it.
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    (|| {
        let result = obj.get_mut("result").and_then(Value::as_object_mut)?;
        let has_next = result.get("nextCursor").is_some_and(|c| !c.is_null());
        let tools = result.get_mut("tools").and_then(Value::as_array_mut)?;
        screen(Page {
            id: &id,
            has_next,
            tools,
        });
        if private_cache || result.contains_key("cacheScope") || result.contains_key("ttlMs") {
            // The list is filtered per token: no shared cache may serve it to anyone else.
            result.insert("cacheScope".into(), Value::from("private"));
        }
        Some(())
    })()
    .is_some()
}

/// Apply `filter_tools_result` to a single message or each element of a batch.
pub fn filter_tools_any(
    msg: &mut Value,
    screen: &mut dyn FnMut(Page<'_>),
    private_cache: bool,
) -> bool {
    match msg {
        Value::Array(items) => items.iter_mut().fold(false, |acc, m| {
            filter_tools_result(m, screen, private_cache) | acc
        }),
        other => filter_tools_result(other, screen, private_cache),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_peeked_without_a_tree() {
        let body = br#" {"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"arguments":{"name":"decoy"},"name":"github.get_issue"}}"#;
        let m = parse_messages(body).unwrap();
        assert!(!m.batch);
        let one = &m.items[0];
        assert_eq!(one.id, json!(7));
        assert_eq!(one.method(), Some("tools/call"));
        assert_eq!(
            one.name(),
            Some("github.get_issue"),
            "nested names are not params.name"
        );
        assert!(one.is_request());
        assert_eq!(join(&[one], false), body[1..].to_vec(), "forwarded as sent");

        let b = parse_messages(br#"[{"jsonrpc":"2.0","method":"notifications/initialized"}, 42, {"id":"a","method":1,"params":["x"]}]"#).unwrap();
        assert!(b.batch);
        assert_eq!(b.items.len(), 3);
        assert!(!b.items[0].is_request(), "a notification has no id");
        assert!(!b.items[1].has_method);
        assert!(b.items[2].is_request() && b.items[2].method().is_none());
        assert_eq!(b.items[2].name(), None, "positional params carry no name");
        assert_eq!(
            join(&[&b.items[0], &b.items[2]], true),
            br#"[{"jsonrpc":"2.0","method":"notifications/initialized"},{"id":"a","method":1,"params":["x"]}]"#.to_vec()
        );
        // Escaped strings are decoded before matching.
        let e = parse_messages(
            br#"{"id":1,"method":"tools/call","params":{"name":"github.get\u005fissue"}}"#,
        )
        .unwrap();
        assert_eq!(e.items[0].name(), Some("github.get_issue"));
    }

    #[test]
    fn bad_bodies_are_classified() {
        let parse = |b: &[u8]| {
            parse_messages(b).map(|_| ()).map_err(|e| match e {
                BodyError::Parse(_) => "parse",
                BodyError::Invalid(_) => "invalid",
            })
        };
        assert_eq!(parse(b"{\"id\":1,"), Err("parse"));
        assert_eq!(parse(b"\xff"), Err("parse"));
        assert_eq!(parse(b"[]"), Err("invalid"));
        assert_eq!(parse(b"42"), Err("invalid"));
        assert_eq!(parse(b"\"tools/call\""), Err("invalid"));
        // SECURITY: duplicate members could be read differently by the upstream.
        assert_eq!(
            parse(br#"{"id":1,"method":"tools/call","method":"ping"}"#),
            Err("invalid")
        );
        assert_eq!(
            parse(br#"{"id":1,"method":"tools/call","params":{"name":"github.get_issue","name":"github.delete_repo"}}"#),
            Err("invalid")
        );
        assert_eq!(
            parse(br#"[{"id":1,"params":{"name":"a","name":"b"}}]"#),
            Err("invalid")
        );
        // SECURITY: a member name is compared decoded, so an escaped spelling is the same member.
        assert_eq!(
            parse(br#"{"id":1,"method":"tools/call","params":{"name":"github.get_issue","na\u006de":"github.delete_repo"}}"#),
            Err("invalid")
        );
        let escaped =
            parse_messages(br#"{"id":1,"method":"tools/call","params":{"n\u0061me":"x.y"}}"#)
                .unwrap();
        assert_eq!(escaped.items[0].name(), Some("x.y"));
        // Broken JSON anywhere in a single message is a parse error, also after valid members.
        assert_eq!(
            parse(br#"{"id":1,"method":"tools/call","params":{"name":"a"},}"#),
            Err("parse")
        );
        assert_eq!(parse(br#"{"id":1} {"id":2}"#), Err("parse"));
        assert_eq!(parse(b"  nul"), Err("parse"));
    }

    #[test]
    fn filters_pages_and_keeps_cursor() {
        let f = ToolFilter::new(&["github.get_*".to_string()]).unwrap();
        let mut by_name = |p: Page<'_>| retain_allowed(p.tools, &f);
        let mut m = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[
            {"name":"github.get_issue"},{"name":"github.create_issue"},{"name":42}],"nextCursor":"abc"}});
        assert!(filter_tools_result(&mut m, &mut by_name, false));
        assert_eq!(m["result"]["tools"], json!([{"name":"github.get_issue"}]));
        assert_eq!(m["result"]["nextCursor"], "abc");
        assert!(m["result"].get("cacheScope").is_none());
        let mut empty =
            json!({"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"x"}],"nextCursor":""}});
        filter_tools_result(&mut empty, &mut by_name, true);
        assert_eq!(empty["result"]["tools"], json!([]));
        assert_eq!(empty["result"]["nextCursor"], "");
        assert_eq!(empty["result"]["cacheScope"], "private");
    }

    #[test]
    fn non_list_messages_are_untouched() {
        let mut m =
            json!({"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"tools"}]}});
        let before = m.clone();
        assert!(!filter_tools_result(
            &mut m,
            &mut |_| panic!("not a list"),
            true
        ));
        assert_eq!(m, before);
    }
}
