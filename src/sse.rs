//! Server-sent-event framing for relaying upstream streams.
//!
//! The relay must pass `id:`, `retry:`, comments and empty priming events through byte for byte, and
//! rewrite only the few events that carry a filtered `tools/list` result. The SSE crates on crates.io
//! parse into structs and drop comments, so re-serialising through them would not be faithful; this module
//! only finds event boundaries (a blank line after CRLF, LF or CR line ends) on the raw bytes and exposes
//! the joined `data` of an event.

use bytes::{Bytes, BytesMut};

/// Splits a byte stream into complete raw events (terminator included).
#[derive(Debug, Default)]
pub struct EventSplitter {
    buf: BytesMut,
    /// Whether the stream's start has been checked for a byte-order mark.
    bom_checked: bool,
}

/// A UTF-8 byte-order mark, which SSE clients drop from the start of a stream.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// The buffered event exceeded the size cap.
#[derive(Debug, thiserror::Error)]
#[error("server-sent event larger than {0} bytes")]
pub struct EventTooLarge(pub usize);

impl EventSplitter {
    /// Feed bytes; returns every event completed by them.
    ///
    /// # Errors
    /// If a single event grows beyond `max`.
    pub fn push(&mut self, chunk: &[u8], max: usize) -> Result<Vec<Bytes>, EventTooLarge> {
        self.buf.extend_from_slice(chunk);
        if !self.bom_checked {
            // SECURITY: clients drop a leading byte-order mark and read the first line as a field; with
            // it left in place the hub would read a field named "\u{feff}data", find no data in the
            // event, and relay a tools list in it unfiltered. It is dropped here as clients drop it.
            if self.buf.len() < BOM.len() && BOM.starts_with(&self.buf) {
                return Ok(Vec::new());
            }
            if self.buf.starts_with(BOM) {
                let _ = self.buf.split_to(BOM.len());
            }
            self.bom_checked = true;
        }
        let mut out = Vec::new();
        while let Some(end) = self.boundary() {
            out.push(self.buf.split_to(end).freeze());
        }
        if self.buf.len() > max {
            return Err(EventTooLarge(max));
        }
        Ok(out)
    }

    /// Whatever is left when the stream ends (an unterminated final event).
    pub fn finish(&mut self) -> Option<Bytes> {
        (!self.buf.is_empty()).then(|| self.buf.split().freeze())
    }

    /// End offset of the first complete event, if any. Rescans the (small) pending event from its start:
    /// simple and obviously correct for every line-ending mix.
    fn boundary(&self) -> Option<usize> {
        let b = &self.buf[..];
        let mut i = 0;
        // Offset just past the previous line end, or 0 at the start of the event.
        let mut line_start = 0;
        while i < b.len() {
            let eol_len = match b[i] {
                b'\n' => 1,
                b'\r' => match b.get(i + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    // A CR at the very end: wait to see whether LF follows.
                    None => return None,
                },
                _ => {
                    i += 1;
                    continue;
                }
            };
            if i == line_start {
                // An empty line: the event ends after it.
                return Some(i + eol_len);
            }
            i += eol_len;
            line_start = i;
        }
        None
    }
}

/// The lines of one raw event, without their line ends.
fn lines(event: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = event;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let pos = rest.iter().position(|&c| c == b'\n' || c == b'\r');
        let (line, next) = match pos {
            None => (rest, &rest[rest.len()..]),
            Some(p) => {
                let skip = if rest[p] == b'\r' && rest.get(p + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                (&rest[..p], &rest[p + skip..])
            }
        };
        rest = next;
        Some(line)
    })
}

fn field(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&c| c == b':') {
        None => (line, &[][..]),
        Some(p) => {
            let v = &line[p + 1..];
            (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
        }
    }
}

/// The event's `data` (lines joined by `\n`), or `None` if it has no data field.
pub fn data(event: &[u8]) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for l in lines(event) {
        let (name, value) = field(l);
        if name == b"data" && !l.starts_with(b":") {
            let d = out.get_or_insert_with(Vec::new);
            if !d.is_empty() {
                d.push(b'\n');
            }
            d.extend_from_slice(value);
        }
    }
    out
}

/// Rebuild an event with new data, keeping every non-data line (id, event, retry, comments) in place.
pub fn replace_data(event: &[u8], new_data: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(event.len() + new_data.len());
    let mut wrote = false;
    for l in lines(event) {
        if l.is_empty() {
            continue;
        }
        let (name, _) = field(l);
        if name == b"data" && !l.starts_with(b":") {
            if !wrote {
                for dl in new_data.split(|&c| c == b'\n') {
                    out.extend_from_slice(b"data: ");
                    out.extend_from_slice(dl);
                    out.push(b'\n');
                }
                wrote = true;
            }
            continue;
        }
        out.extend_from_slice(l);
        out.push(b'\n');
    }
    out.push(b'\n');
    Bytes::from(out)
}

/// Encode one JSON message as an SSE event.
pub fn event_from_json(json: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(json.len() + 16);
    out.extend_from_slice(b"event: message\ndata: ");
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(input: &[u8], chunk: usize) -> Vec<Bytes> {
        let mut s = EventSplitter::default();
        let mut out = Vec::new();
        for c in input.chunks(chunk) {
            out.extend(s.push(c, 1 << 20).unwrap());
        }
        out.extend(s.finish());
        out
    }

    #[test]
    fn boundaries_with_every_line_ending_and_chunking() {
        let input: &[u8] = b"id: 1\ndata:\n\n: keepalive\n\nretry: 500\r\ndata: {\"a\":1}\r\n\r\nevent: m\rdata: x\r\rdata: tail";
        for chunk in 1..input.len() {
            let ev = split_all(input, chunk);
            assert_eq!(
                ev,
                vec![
                    Bytes::from_static(b"id: 1\ndata:\n\n"),
                    Bytes::from_static(b": keepalive\n\n"),
                    Bytes::from_static(b"retry: 500\r\ndata: {\"a\":1}\r\n\r\n"),
                    Bytes::from_static(b"event: m\rdata: x\r\r"),
                    Bytes::from_static(b"data: tail"),
                ],
                "chunk size {chunk}"
            );
        }
        // Concatenating the events reproduces the input byte for byte.
        assert_eq!(split_all(input, 3).concat(), input);
    }

    #[test]
    fn data_joins_lines_and_ignores_comments() {
        assert_eq!(
            data(b"id: 1\ndata: {\"a\":\ndata: 1}\n\n").unwrap(),
            b"{\"a\":\n1}"
        );
        assert_eq!(data(b"id: 1\ndata:\n\n").unwrap(), b"");
        assert_eq!(data(b": data: nope\n\n"), None);
    }

    #[test]
    fn replace_keeps_other_fields() {
        let e = replace_data(
            b"event: message\nid: 7\ndata: old\ndata: more\nretry: 10\n\n",
            b"new",
        );
        assert_eq!(&e[..], b"event: message\nid: 7\ndata: new\nretry: 10\n\n");
    }

    #[test]
    fn a_leading_byte_order_mark_is_dropped_however_the_stream_is_cut() {
        let input: &[u8] = b"\xEF\xBB\xBFdata: {\"a\":1}\n\ndata: \xEF\xBB\xBF\n\n";
        for chunk in 1..input.len() {
            let ev = split_all(input, chunk);
            assert_eq!(
                data(&ev[0]).as_deref(),
                Some(&b"{\"a\":1}"[..]),
                "chunk {chunk}"
            );
            // Only the stream's first three bytes: a mark later on is data.
            assert_eq!(&ev[1][..], b"data: \xEF\xBB\xBF\n\n", "chunk {chunk}");
        }
        // A stream that is only part of a mark ends as it came.
        assert_eq!(
            split_all(b"\xEF\xBB", 1),
            vec![Bytes::from_static(b"\xEF\xBB")]
        );
    }

    #[test]
    fn oversized_events_are_refused() {
        let mut s = EventSplitter::default();
        assert!(s.push(&[b'x'; 100], 50).is_err());
    }
}
