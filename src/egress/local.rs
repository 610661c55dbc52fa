//! The host's own addresses, kept current while the hub runs.
//!
//! SECURITY: a name that resolves to one of the host's addresses would reach every service on the host
//! (sshd, a database, a metadata proxy) as a local peer, so `policy::admit` refuses them all. An address
//! can appear at any time (DHCP, a new interface, a container's veth), so the set is not read once:
//! a netlink socket subscribed to address changes triggers a fresh `getifaddrs` (within milliseconds
//! of the change), and `dial` also checks
//! the connection it made (`is_local_connection`) in case an address was added between the two.

use std::collections::HashSet;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use arc_swap::ArcSwap;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, socket,
};

use crate::policy::ip::canonical_ip;

/// `RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR` (linux/rtnetlink.h): address added or removed.
const ADDRESS_GROUPS: u32 = 0x10 | 0x100;

/// Every address configured on the host's interfaces.
#[derive(Debug)]
pub struct LocalAddrs {
    set: ArcSwap<HashSet<IpAddr>>,
}

fn read() -> HashSet<IpAddr> {
    match nix::ifaddrs::getifaddrs() {
        Ok(it) => it
            .filter_map(|i| i.address)
            .filter_map(|a| {
                a.as_sockaddr_in()
                    .map(|s| IpAddr::V4(s.ip()))
                    .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
            })
            .map(canonical_ip)
            .collect(),
        Err(e) => {
            // Keep what was known; loopback and the unspecified address are refused by class anyway.
            tracing::warn!(error = %e, "could not list the host's addresses");
            HashSet::new()
        }
    }
}

impl LocalAddrs {
    /// The host's addresses now.
    pub fn load() -> Arc<Self> {
        Arc::new(Self {
            set: ArcSwap::from_pointee(read()),
        })
    }

    /// The current set.
    pub fn current(&self) -> Arc<HashSet<IpAddr>> {
        self.set.load_full()
    }

    /// Read the host's addresses again.
    pub fn refresh(&self) {
        let new = read();
        if !new.is_empty() {
            self.set.store(Arc::new(new));
        }
    }

    /// The process's one set, watched by one thread: the host's addresses are a fact about the host,
    /// so every proxy in the process shares it (tests run many hubs in one process).
    pub fn shared() -> Arc<Self> {
        static SHARED: std::sync::OnceLock<Arc<LocalAddrs>> = std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| {
                let me = Self::load();
                let watched = me.clone();
                let spawned = std::thread::Builder::new()
                    .name("mcp-hub-addrs".into())
                    .spawn(move || watched.watch());
                if let Err(e) = spawned {
                    tracing::warn!(error = %e, "cannot watch the host's addresses; new addresses are caught at dial time only");
                }
                me
            })
            .clone()
    }

    /// Refresh on every address change the kernel announces, for the life of the process. A thread
    /// blocked in `recv` rather than a task: registering a foreign fd with tokio's reactor needs
    /// `unsafe` (the crate forbids it), and one parked thread costs nothing. If the subscription cannot
    /// be made (no netlink in a sandbox), say so: the dial-time check remains.
    fn watch(&self) {
        let fd = match subscribe() {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the host's addresses; new addresses are caught at dial time only");
                return;
            }
        };
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // The messages are not parsed: any change (or ENOBUFS, a lost one) means "read again".
            match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(_) | Err(nix::errno::Errno::ENOBUFS) => self.refresh(),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "address watch failed; new addresses are caught at dial time only");
                    return;
                }
            }
        }
    }
}

fn subscribe() -> nix::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, ADDRESS_GROUPS))?;
    Ok(fd)
}

/// Whether a connection the hub made ended up on the host itself: the kernel picks a local
/// destination's own address as the source, so a local peer shows up as source == destination.
/// (Loopback destinations, whose source is 127.0.0.1 whatever the destination, are refused by class
/// before dialling.)
pub fn is_local_connection(s: &tokio::net::TcpStream) -> bool {
    match (s.local_addr(), s.peer_addr()) {
        (Ok(l), Ok(p)) => canonical_ip(l.ip()) == canonical_ip(p.ip()),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn loopback_connections_are_local() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = tokio::net::TcpStream::connect(l.local_addr().unwrap())
            .await
            .unwrap();
        assert!(super::is_local_connection(&c));
        assert!(
            super::LocalAddrs::load()
                .current()
                .contains(&"127.0.0.1".parse().unwrap())
        );
    }
}
