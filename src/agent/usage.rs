//! Stage meter: the model and token usage an LLM response reports, read from Anthropic's and OpenAI's
//! JSON responses and streams, for the audit line, the metrics and `max_tokens_per_day`.
//!
//! Shapes read (the first `model` seen wins; token counts only grow, because streams repeat cumulative
//! totals):
//! - Anthropic Messages: `model` and `usage.{input_tokens, output_tokens, cache_*_input_tokens}`; when
//!   streaming, `message_start` carries `message.model` and `message.usage`, `message_delta` carries
//!   `usage.output_tokens` so far.
//! - OpenAI Chat Completions: `model`, `usage.{prompt_tokens, completion_tokens}`; streamed chunks carry
//!   `model`, and `usage` only in a last chunk when the client asked for `stream_options.include_usage`.
//! - OpenAI Responses: `usage.{input_tokens, output_tokens}`; streamed, inside `response.completed`'s
//!   `response`.

use std::borrow::Cow;

use memchr::memmem;
use serde::Deserialize;

/// What a response reported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The model that answered.
    pub model: Option<String>,
    /// Input tokens, cache reads and writes included.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
}

/// Longest model name kept (it becomes a metric label and an audit field).
const MAX_MODEL: usize = 128;

impl Usage {
    /// Input plus output: what `max_tokens_per_day` counts.
    pub fn total(&self) -> u64 {
        self.input_tokens.saturating_add(self.output_tokens)
    }

    /// Read a whole JSON response body.
    pub fn read_json(&mut self, body: &[u8]) {
        self.read(body);
    }

    /// Read one SSE event's `data`. Most events of a stream (text deltas) name neither a model nor a
    /// usage, so the JSON is parsed only for events whose bytes mention one the meter still needs.
    pub fn read_event(&mut self, data: &[u8]) {
        let wants_model = self.model.is_none() && memmem::find(data, b"\"model\"").is_some();
        if !wants_model && memmem::find(data, b"\"usage\"").is_none() {
            return;
        }
        self.read(data);
    }

    /// Read the top-level `model` and `usage` of a JSON object, and those of its `message` and
    /// `response` members (the streamed shapes nest them there).
    fn read(&mut self, json: &[u8]) {
        let mut nested = [None, None];
        self.read_scope(json, Some(&mut nested));
        for at in nested.into_iter().flatten() {
            self.read_scope(&json[at..], None);
        }
    }

    /// One object's `model` and `usage`; with `nested`, where its `message` and `response` start.
    ///
    /// Only those members' values are parsed (by serde_json); the rest of the document is stepped
    /// over by [`members`]. Deserializing the whole response, even into a struct that skips unknown
    /// fields, cost 6,000 instructions for a 400-byte completion, a tenth of the gateway's work per
    /// call (BENCHMARKS.md), because every skipped string and number is still tokenised.
    fn read_scope(&mut self, json: &[u8], mut nested: Option<&mut [Option<usize>; 2]>) {
        members(json, |key, at| match key {
            b"model" if self.model.is_none() => {
                if let Ok(m) = first_value::<Cow<'_, str>>(&json[at..]) {
                    if !m.is_empty() && m.len() <= MAX_MODEL {
                        self.model = Some(m.into_owned());
                    }
                }
            }
            b"usage" => {
                if let Ok(u) = first_value::<Counts>(&json[at..]) {
                    self.count(&u);
                }
            }
            b"message" | b"response" => {
                if let Some(n) = nested.as_deref_mut() {
                    n[usize::from(key == b"response")] = Some(at);
                }
            }
            _ => {}
        });
    }

    fn count(&mut self, u: &Counts) {
        let n = |v: Option<u64>| v.unwrap_or(0);
        let input = n(u.input_tokens)
            .saturating_add(n(u.prompt_tokens))
            .saturating_add(n(u.cache_creation_input_tokens))
            .saturating_add(n(u.cache_read_input_tokens));
        let output = n(u.output_tokens).saturating_add(n(u.completion_tokens));
        self.input_tokens = self.input_tokens.max(input);
        self.output_tokens = self.output_tokens.max(output);
    }
}

/// The first JSON value in `b` (whatever follows it is not looked at).
fn first_value<'a, T: Deserialize<'a>>(b: &'a [u8]) -> Result<T, serde_json::Error> {
    T::deserialize(&mut serde_json::Deserializer::from_slice(b))
}

/// Call `f(key, value_offset)` for each member of the JSON object `json` starts with (after
/// whitespace), in order, without parsing the values: strings are skipped with `memchr`, nesting is
/// counted, and only a string at depth one followed by `:` is a key. Hand-written, not a JSON crate,
/// for speed (see [`Usage::read_scope`]); it never decides anything but which members to parse, and a
/// document it misreads is only metered wrongly, never forwarded differently. Keys spelled with
/// escapes are not recognised (no provider writes them so).
fn members(json: &[u8], mut f: impl FnMut(&[u8], usize)) {
    let ws = |mut i: usize| {
        while json.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut i = ws(0);
    if json.get(i) != Some(&b'{') {
        return;
    }
    i += 1;
    let mut depth = 1usize;
    let mut key_next = true;
    while let Some(&c) = json.get(i) {
        match c {
            b'"' => {
                let Some(end) = string_end(json, i + 1) else {
                    return;
                };
                if depth == 1 && key_next {
                    let colon = ws(end + 1);
                    if json.get(colon) == Some(&b':') {
                        key_next = false;
                        f(&json[i + 1..end], ws(colon + 1));
                        i = colon + 1;
                        continue;
                    }
                }
                i = end + 1;
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    return;
                }
            }
            b',' if depth == 1 => key_next = true,
            _ => {}
        }
        i += 1;
    }
}

/// The index of the quote closing the string whose contents start at `i`.
fn string_end(json: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let k = i + memchr::memchr2(b'"', b'\\', json.get(i..)?)?;
        if json[k] == b'\\' {
            i = k + 2;
        } else {
            return Some(k);
        }
    }
}

/// The token counts of a `usage` object (other fields are skipped).
#[derive(Deserialize)]
struct Counts {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_json_and_stream() {
        let mut u = Usage::default();
        u.read_json(br#"{"id":"msg_1","model":"claude-sonnet-4-5","usage":{"input_tokens":12,"cache_read_input_tokens":3,"output_tokens":7}}"#);
        assert_eq!(
            (u.model.as_deref(), u.input_tokens, u.output_tokens),
            (Some("claude-sonnet-4-5"), 15, 7)
        );
        let mut s = Usage::default();
        for d in [
            r#"{"type":"message_start","message":{"id":"m","model":"claude-x","usage":{"input_tokens":20,"output_tokens":1}}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi"}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":9}}"#,
        ] {
            s.read_event(d.as_bytes());
        }
        assert_eq!(
            (
                s.model.as_deref(),
                s.input_tokens,
                s.output_tokens,
                s.total()
            ),
            (Some("claude-x"), 20, 9, 29)
        );
    }

    #[test]
    fn only_top_level_members_count() {
        let mut u = Usage::default();
        // A tool's input may hold any keys, "usage" and "model" among them, and strings may hold
        // braces and escaped quotes: none of it is the response's own.
        u.read_json(br#"{"content":[{"type":"tool_use","input":{"usage":{"input_tokens":1},"model":"fake"}},{"type":"text","text":"a \"}\" {\"usage\": 9} \\"}],"model" : "real","usage": {"input_tokens": 4, "output_tokens": 2}, "usage2": {}}"#);
        assert_eq!(
            (u.model.as_deref(), u.input_tokens, u.output_tokens),
            (Some("real"), 4, 2)
        );
        for junk in [
            &b""[..],
            b"[]",
            b"{",
            b"{\"model\"",
            b"{\"usage\":",
            b"\"x\"",
            b"{\"a\":\"\\",
        ] {
            let mut u = Usage::default();
            u.read_json(junk);
            assert_eq!(u, Usage::default());
        }
    }

    #[test]
    fn openai_chat_and_responses() {
        let mut u = Usage::default();
        u.read_json(br#"{"model":"gpt-4o","usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7}}"#);
        assert_eq!((u.input_tokens, u.output_tokens), (5, 2));
        let mut s = Usage::default();
        s.read_event(br#"{"id":"c","model":"gpt-4o-mini","choices":[{"delta":{"content":"a"}}]}"#);
        s.read_event(br#"{"id":"c","model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#);
        s.read_event(b"[DONE]");
        assert_eq!((s.model.as_deref(), s.total()), (Some("gpt-4o-mini"), 7));
        let mut r = Usage::default();
        r.read_event(br#"{"type":"response.completed","response":{"model":"gpt-5","usage":{"input_tokens":8,"output_tokens":2}}}"#);
        assert_eq!((r.model.as_deref(), r.total()), (Some("gpt-5"), 10));
    }
}
