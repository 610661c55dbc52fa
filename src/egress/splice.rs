//! Zero-copy tunnelling with splice(2): socket -> pipe -> socket, so tunnelled bytes never enter user
//! space. The bench showed the copying tunnel at a third of direct throughput; this is how the kernel
//! moves them instead. Readiness comes from tokio, the syscalls from nix (no `unsafe` here).
//!
//! Each direction starts by copying through a small buffer and switches to splice only once it has
//! moved `SPLICE_AFTER` bytes (HAProxy's `splice-auto` does the same): most tunnels are short (a TLS
//! handshake and one API call), and for them the two pipes per direction (created, sized, closed)
//! cost more system calls than the copying does.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Capacity of each pipe (two per direction). Larger than the default 64 KiB to cut syscalls per MiB,
/// but modest: the kernel charges pipe capacity to the user (`fs.pipe-user-pages-soft`, 64 MiB by
/// default), and past that an unprivileged user's new pipes get 8 KiB. At 256 KiB x 4 per tunnel, 64
/// tunnels fit before that; beyond, tunnels still work, with more syscalls.
const PIPE_SIZE: i32 = 256 << 10;

/// Bytes a direction copies through user space before it sets up its pipes.
const SPLICE_AFTER: u64 = 64 << 10;
/// The copy buffer of a direction that has not switched to splice yet.
const COPY_BUF: usize = 16 << 10;

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) =
        nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    // Best effort: a smaller pipe still works, just with more syscalls.
    let _ = fcntl(&w, FcntlArg::F_SETPIPE_SZ(PIPE_SIZE));
    Ok((r, w))
}

fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_NONBLOCK | SpliceFFlags::SPLICE_F_MOVE
}

/// Move bytes `from` -> `to` until EOF; then shut down `to`'s write half. Counts into `n`.
///
/// Two pipes, so the source is read into one while the other drains into a destination that is not
/// writable yet: reading and writing overlap instead of taking turns. A pipe is only ever filled while
/// empty, so EAGAIN from a fill always means "the socket has nothing" (never "the pipe is full"), which
/// is what clearing the socket's readiness needs to be true.
async fn one_way(from: &TcpStream, to: &TcpStream, n: &AtomicU64) -> io::Result<()> {
    if copy_first(from, to, n).await? {
        let _ = nix::sys::socket::shutdown(to.as_raw_fd(), nix::sys::socket::Shutdown::Write);
        return Ok(());
    }
    let pipes = [pipe()?, pipe()?];
    // Indexes of empty pipes, and of filled ones in fill order with the bytes each still holds.
    let mut empty: Vec<usize> = vec![1, 0];
    let mut filled: std::collections::VecDeque<(usize, usize)> = std::collections::VecDeque::new();
    let mut eof = false;
    loop {
        if !eof {
            if let Some(&p) = empty.last() {
                match from.try_io(Interest::READABLE, || {
                    splice(
                        from.as_fd(),
                        None,
                        &pipes[p].1,
                        None,
                        PIPE_SIZE as usize,
                        flags(),
                    )
                    .map_err(io::Error::from)
                }) {
                    Ok(0) => eof = true,
                    Ok(k) => {
                        empty.pop();
                        filled.push_back((p, k));
                        n.fetch_add(k as u64, Ordering::Relaxed);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if let Some((p, left)) = filled.front_mut() {
            let (p, want) = (*p, *left);
            match to.try_io(Interest::WRITABLE, || {
                splice(&pipes[p].0, None, to.as_fd(), None, want, flags()).map_err(io::Error::from)
            }) {
                Ok(k) if k >= want => {
                    filled.pop_front();
                    empty.push(p);
                }
                Ok(k) => *left -= k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if eof && filled.is_empty() {
            let _ = nix::sys::socket::shutdown(to.as_raw_fd(), nix::sys::socket::Shutdown::Write);
            return Ok(());
        }
        // Readiness futures return at once when ready (and yield when the task's budget is spent).
        let can_fill = !eof && !empty.is_empty();
        tokio::select! {
            r = from.readable(), if can_fill => r?,
            r = to.writable(), if !filled.is_empty() => r?,
            // Unreachable (two pipes are always either empty or filled); ending beats spinning.
            else => return Ok(()),
        }
    }
}

/// The start of a direction: copy through a buffer until `SPLICE_AFTER` bytes have moved (returns
/// `false`: go on with splice) or the source ends first (`true`).
async fn copy_first(from: &TcpStream, to: &TcpStream, n: &AtomicU64) -> io::Result<bool> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut moved = 0u64;
    while moved < SPLICE_AFTER {
        from.readable().await?;
        let k = match from.try_read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        n.fetch_add(k as u64, Ordering::Relaxed);
        let mut off = 0;
        while off < k {
            match to.try_write(&buf[off..k]) {
                Ok(w) => off += w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
                Err(e) => return Err(e),
            }
        }
        moved += k as u64;
    }
    Ok(false)
}

/// Tunnel two sockets both ways until both directions end, an error, `idle` without a byte, or `stop`
/// resolves (a reload withdrew the permission). Returns (a -> b, b -> a) byte counts.
pub async fn tunnel(
    a: &TcpStream,
    b: &TcpStream,
    idle: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> (u64, u64) {
    tokio::pin!(stop);
    let up = Arc::new(AtomicU64::new(0));
    let down = Arc::new(AtomicU64::new(0));
    let both = async { tokio::join!(one_way(a, b, &up), one_way(b, a, &down)) };
    tokio::pin!(both);
    let tick = (idle / 4).max(Duration::from_millis(10));
    let mut last = (0, 0);
    let mut quiet = Duration::ZERO;
    loop {
        tokio::select! {
            _ = &mut both => break,
            () = &mut stop => break,
            () = tokio::time::sleep(tick) => {
                let now = (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed));
                if now == last {
                    quiet += tick;
                    if quiet >= idle {
                        break;
                    }
                } else {
                    quiet = Duration::ZERO;
                    last = now;
                }
            }
        }
    }
    (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn moves_bytes_both_ways_and_propagates_eof() {
        let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(l1.local_addr().unwrap()).await.unwrap();
        let (a, _) = l1.accept().await.unwrap();
        let b = TcpStream::connect(l2.local_addr().unwrap()).await.unwrap();
        let (mut server, _) = l2.accept().await.unwrap();
        let t = tokio::spawn(async move {
            tunnel(&a, &b, Duration::from_secs(5), std::future::pending()).await
        });
        let blob: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let send = blob.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&send).await.unwrap();
            client.shutdown().await.unwrap();
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.unwrap();
            back
        });
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, blob);
        server.write_all(b"reply").await.unwrap();
        server.shutdown().await.unwrap();
        assert_eq!(writer.await.unwrap(), b"reply");
        let (up, down) = t.await.unwrap();
        assert_eq!((up, down), (3_000_000, 5));
    }

    #[tokio::test]
    async fn idle_tunnels_are_closed() {
        let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(l1.local_addr().unwrap()).await.unwrap();
        let (a, _) = l1.accept().await.unwrap();
        let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = TcpStream::connect(l2.local_addr().unwrap()).await.unwrap();
        let start = std::time::Instant::now();
        tunnel(&a, &b, Duration::from_millis(200), std::future::pending()).await;
        assert!(start.elapsed() < Duration::from_secs(2));
    }
}
