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

    /// Parse only the fields the meter reads; everything else is skipped without being built (a
    /// `serde_json::Value` of the whole response was most of the relay's cost per call).
    fn read(&mut self, json: &[u8]) {
        let Ok(doc) = serde_json::from_slice::<Doc<'_>>(json) else {
            return;
        };
        // Streamed shapes nest the message (Anthropic's message_start) or the response (OpenAI's
        // Responses events).
        let top = Scope {
            model: doc.model,
            usage: doc.usage,
        };
        for scope in [Some(top), doc.message, doc.response].into_iter().flatten() {
            if self.model.is_none() {
                if let Some(m) = scope
                    .model
                    .filter(|m| !m.is_empty() && m.len() <= MAX_MODEL)
                {
                    self.model = Some(m.into_owned());
                }
            }
            if let Some(u) = scope.usage {
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
    }
}

/// The fields read from a response or an event (unknown fields are skipped).
#[derive(Deserialize)]
struct Doc<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<Counts>,
    #[serde(borrow, default)]
    message: Option<Scope<'a>>,
    #[serde(borrow, default)]
    response: Option<Scope<'a>>,
}

#[derive(Deserialize)]
struct Scope<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<Counts>,
}

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
