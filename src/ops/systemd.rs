//! systemd readiness protocol (`Type=notify`): `READY=1` once every listener is bound and the CA and
//! configuration are loaded, `RELOADING=1` with `MONOTONIC_USEC` while a reload runs, `STOPPING=1` when
//! the drain starts. A datagram to `$NOTIFY_SOCKET`; without it (not under systemd) nothing is sent.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::OnceLock;

/// The socket messages are sent from, opened with the first message (`READY=1`, at start-up) and kept:
/// a hub out of file descriptors must still be able to tell systemd that a reload ran or that it is
/// stopping, and a socket per message would need a descriptor each time.
static SOCKET: OnceLock<Option<UnixDatagram>> = OnceLock::new();

fn unbound() -> std::io::Result<UnixDatagram> {
    let sock = UnixDatagram::unbound()?;
    // Never block the service on its supervisor: if the notify socket is full, the message is dropped.
    sock.set_nonblocking(true)?;
    Ok(sock)
}

/// Send `msg` to the socket systemd gave us, if any. Errors are logged, never fatal.
pub fn notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = SOCKET.get_or_init(|| {
        unbound()
            .map_err(|e| tracing::warn!(error = %e, "cannot open a socket for sd_notify"))
            .ok()
    });
    let Some(sock) = sock else { return };
    if let Err(e) = send(sock, Path::new(&path), msg) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// Send `msg` to a notify socket path (`@name` for the abstract namespace), from a new socket.
///
/// # Errors
/// Socket errors.
pub fn notify_to(path: &Path, msg: &str) -> std::io::Result<()> {
    send(&unbound()?, path, msg)
}

fn send(sock: &UnixDatagram, path: &Path, msg: &str) -> std::io::Result<()> {
    let raw = path.as_os_str().as_encoded_bytes();
    if let Some(name) = raw.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(msg.as_bytes(), &addr)?;
    } else {
        sock.send_to(msg.as_bytes(), path)?;
    }
    Ok(())
}

/// `READY=1`.
pub fn ready() {
    notify("READY=1\nSTATUS=serving");
}

/// `RELOADING=1` with the monotonic timestamp systemd requires to match the reload to its request.
pub fn reloading() {
    let usec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
        .unwrap_or(0);
    notify(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}

/// `STOPPING=1`.
pub fn stopping() {
    notify("STOPPING=1\nSTATUS=draining");
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_full_notify_socket_never_blocks() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("notify");
        let _rx = std::os::unix::net::UnixDatagram::bind(&p).unwrap(); // never read
        let start = std::time::Instant::now();
        let mut errors = 0;
        for _ in 0..10_000 {
            if super::notify_to(&p, "RELOADING=1\nMONOTONIC_USEC=1").is_err() {
                errors += 1;
            }
        }
        assert!(errors > 0, "the socket buffer must have filled");
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn sends_datagrams_to_path_and_abstract_sockets() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("notify");
        let rx = std::os::unix::net::UnixDatagram::bind(&p).unwrap();
        super::notify_to(&p, "READY=1").unwrap();
        let mut b = [0u8; 64];
        let n = rx.recv(&mut b).unwrap();
        assert_eq!(&b[..n], b"READY=1");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("mcp-hub-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
        super::notify_to(std::path::Path::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let n = rx.recv(&mut b).unwrap();
        assert_eq!(&b[..n], b"STOPPING=1");
    }
}
