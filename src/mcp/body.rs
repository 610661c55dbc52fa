//! Reading a whole request or response body, bounded in size.
//!
//! Both the agent's POST bodies and the upstream's JSON responses are read whole before the hub looks at
//! them. Nearly always such a body is one frame (a `Content-Length` body that arrived with its head);
//! it is then handed on as that frame's bytes, with no copy and no list of frames to assemble
//! (`http_body_util`'s `Limited` + `collect` build and copy out a frame list even for one frame; the
//! cost is in BENCHMARKS.md, "Bodies").

use std::future::poll_fn;

use bytes::{Bytes, BytesMut};
use http_body::Body;

/// Why a bounded read failed.
#[derive(Debug)]
pub enum ReadError<E> {
    /// The body is, or announced it would be, larger than the limit.
    TooLarge,
    /// The body itself failed (connection closed or broke off mid-body).
    Body(E),
}

/// Read all of `body`'s data, refusing it once it exceeds `limit` bytes. Trailers are ignored.
///
/// # Errors
/// [`ReadError::TooLarge`] past the limit (also when the announced length is already past it, before
/// anything is read); [`ReadError::Body`] when the body fails.
pub async fn read_bounded<B>(body: &mut B, limit: usize) -> Result<Bytes, ReadError<B::Error>>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut body = std::pin::Pin::new(body);
    if usize::try_from(body.size_hint().lower()).map_or(true, |n| n > limit) {
        return Err(ReadError::TooLarge);
    }
    // The first data frame as it came; `more` only once a second one arrives.
    let mut first = Bytes::new();
    let mut more: Option<BytesMut> = None;
    while !body.is_end_stream() {
        let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await else {
            break;
        };
        let Ok(data) = frame.map_err(ReadError::Body)?.into_data() else {
            continue;
        };
        let have = more.as_ref().map_or(first.len(), BytesMut::len);
        if data.len() > limit.saturating_sub(have) {
            return Err(ReadError::TooLarge);
        }
        match more.as_mut() {
            Some(buf) => buf.extend_from_slice(&data),
            None if first.is_empty() => first = data,
            None => {
                let mut buf = BytesMut::with_capacity(have + data.len());
                buf.extend_from_slice(&first);
                buf.extend_from_slice(&data);
                more = Some(buf);
            }
        }
    }
    Ok(more.map_or(first, BytesMut::freeze))
}

/// Read and drop what is left of `body`, until it ends, `limit` more bytes have gone by, `time` has
/// passed, or it fails; whichever comes first. For refused requests: see `gateway::refuse`.
pub async fn discard<B>(body: &mut B, limit: usize, time: std::time::Duration)
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut body = std::pin::Pin::new(body);
    if body.is_end_stream() {
        return;
    }
    let drain = async {
        let mut left = limit;
        while !body.is_end_stream() {
            match poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
                Some(Ok(frame)) => {
                    let n = frame.data_ref().map_or(0, Bytes::len);
                    match left.checked_sub(n) {
                        Some(l) => left = l,
                        None => return,
                    }
                }
                Some(Err(_)) | None => return,
            }
        }
    };
    let _ = tokio::time::timeout(time, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};

    /// A body of the given frames, with no length announced.
    fn frames(parts: &[&'static str]) -> impl Body<Data = Bytes, Error = std::io::Error> {
        let frames: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = parts
            .iter()
            .map(|p| Ok(http_body::Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn one_frame_is_passed_on_without_a_copy() {
        let src = Bytes::from_static(b"{\"jsonrpc\":\"2.0\"}");
        let got = read_bounded(&mut Full::new(src.clone()), 100)
            .await
            .unwrap();
        assert_eq!(got, src);
        assert_eq!(got.as_ptr(), src.as_ptr(), "the frame's own bytes");
    }

    #[tokio::test]
    async fn frames_are_joined_in_order() {
        let got = read_bounded(&mut frames(&["ab", "", "cd", "e"]), 5)
            .await
            .unwrap();
        assert_eq!(&got[..], b"abcde");
        let empty = read_bounded(&mut frames(&[]), 5).await.unwrap();
        assert!(empty.is_empty());
    }

    #[tokio::test]
    async fn the_limit_holds_across_frames_and_announced_lengths() {
        assert!(matches!(
            read_bounded(&mut frames(&["abc", "def"]), 5).await,
            Err(ReadError::TooLarge)
        ));
        assert!(matches!(
            read_bounded(&mut frames(&["abcdef"]), 5).await,
            Err(ReadError::TooLarge)
        ));
        // Announced too large: refused before reading.
        assert!(matches!(
            read_bounded(&mut Full::new(Bytes::from_static(b"abcdef")), 5).await,
            Err(ReadError::TooLarge)
        ));
        // Exactly the limit is fine.
        assert_eq!(
            &read_bounded(&mut frames(&["abc", "de"]), 5).await.unwrap()[..],
            b"abcde"
        );
    }

    #[tokio::test]
    async fn a_failing_body_is_an_error() {
        let parts: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = vec![
            Ok(http_body::Frame::data(Bytes::from_static(b"ab"))),
            Err(std::io::Error::other("reset")),
        ];
        let mut body = StreamBody::new(futures_util::stream::iter(parts));
        assert!(matches!(
            read_bounded(&mut body, 100).await,
            Err(ReadError::Body(_))
        ));
        // Trailers are not data.
        let mut with_trailers = Box::pin(
            Full::new(Bytes::from_static(b"x"))
                .with_trailers(async { Some(Ok(http::HeaderMap::new())) }),
        );
        assert_eq!(
            &read_bounded(&mut with_trailers, 5).await.unwrap()[..],
            b"x"
        );
    }
}
