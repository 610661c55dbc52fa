//! The SSE splitter on an upstream stream cut into arbitrary chunks.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mcp_hub::sse::{EventSplitter, data, replace_data};

fuzz_target!(|input: (Vec<u8>, Vec<u8>)| {
    let (stream, cuts) = input;
    let mut s = EventSplitter::default();
    let mut out = Vec::new();
    let mut at = 0;
    for c in cuts.iter().chain(std::iter::once(&255u8)) {
        let end = (at + *c as usize).min(stream.len());
        match s.push(&stream[at..end], 1 << 16) {
            Ok(events) => {
                for e in events {
                    let _ = data(&e);
                    let _ = replace_data(&e, b"{}");
                    out.extend_from_slice(&e);
                }
            }
            Err(_) => return,
        }
        at = end;
        if at == stream.len() {
            break;
        }
    }
    if at < stream.len() {
        return;
    }
    if let Some(rest) = s.finish() {
        out.extend_from_slice(&rest);
    }
    // Byte for byte: the events are the stream (without a leading byte-order mark).
    let expect = stream
        .strip_prefix(b"\xEF\xBB\xBF".as_slice())
        .unwrap_or(&stream);
    assert_eq!(out, expect);
});
