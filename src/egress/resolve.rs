//! Stage resolve: the hub's own name resolution, for connections and for the DNS responder alike.
//!
//! An asynchronous resolver (hickory-resolver) with a cache, instead of `getaddrinfo` on tokio's
//! blocking pool: there, every lookup held a thread for its whole duration, so one devbox flooding
//! the DNS responder with names that resolve slowly filled the pool and stalled resolution (and with it
//! every new connection) for every devbox. Here a lookup is a future, and two bounds keep one devbox
//! from taking the resolver: at most `PER_SOURCE` lookups in flight per source address (more are
//! refused at once, `Busy`) and `TOTAL` in all (further lookups wait for a slot).
//!
//! Configuration: the host's `/etc/resolv.conf` and `/etc/hosts` (read at start and on every reload),
//! or the nameservers in `egress.resolvers`. Answers are cached as their TTLs say, capped at
//! `MAX_TTL` (`NEGATIVE_TTL` for names that do not exist), so a changed record is seen soon.
//!
//! A name in `/etc/hosts` is answered from there alone, as glibc's `hosts: files dns` does: hickory
//! would look each address family up separately and ask DNS for the one the file lacks (the AAAA of
//! a name listed with an IPv4 address only), and when no nameserver answers (a host with none
//! reachable, as in a lab) that failure is not cached, so every connection paid for a UDP socket and
//! a failed send.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig,
    ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::Query;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::{Hosts, Name, TokioResolver};
use tokio::sync::Semaphore;

use crate::config::Config;
use crate::policy::ip::canonical_ip;

/// Lookups in flight from one source address.
pub const PER_SOURCE: usize = 64;
/// Lookups in flight in all.
pub const TOTAL: usize = 1024;
/// Longest a positive answer is cached.
pub const MAX_TTL: Duration = Duration::from_secs(300);
/// Longest a negative answer is cached.
pub const NEGATIVE_TTL: Duration = Duration::from_secs(30);
/// Cached names.
const CACHE_SIZE: usize = 8192;

/// Why a name produced no addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveError {
    /// The name does not exist, has no addresses, or the resolver failed.
    Failed,
    /// This source already has `PER_SOURCE` lookups in flight.
    Busy,
}

/// The shared resolver.
pub struct Resolver {
    /// The resolver and the configuration it was built for (rebuilt for every new one).
    inner: Mutex<(Option<Arc<Config>>, Arc<Built>)>,
    total: Semaphore,
    in_flight: Mutex<HashMap<IpAddr, usize>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

/// One configuration's resolver: the host's hosts file, then DNS.
struct Built {
    hosts: Hosts,
    dns: TokioResolver,
}

impl Built {
    /// The addresses `/etc/hosts` gives `fqdn`, both families; empty when it does not list the name.
    fn listed(&self, fqdn: &Name) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for t in [RecordType::A, RecordType::AAAA] {
            let Some(l) = self
                .hosts
                .lookup_static_host(&Query::query(fqdn.clone(), t))
            else {
                continue;
            };
            out.extend(l.iter().filter_map(|r| match r {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            }));
        }
        out
    }
}

fn build(servers: &[SocketAddr]) -> Built {
    let hosts = Hosts::from_system().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read the host's hosts file");
        Hosts::default()
    });
    Built {
        hosts,
        dns: build_dns(servers),
    }
}

fn build_dns(servers: &[SocketAddr]) -> TokioResolver {
    let provider = TokioConnectionProvider::default();
    let mut builder = if servers.is_empty() {
        match TokioResolver::builder_tokio() {
            Ok(b) => b,
            Err(e) => {
                // No usable resolv.conf: /etc/hosts only, and every other name fails.
                tracing::warn!(error = %e, "cannot read the host's resolver configuration");
                TokioResolver::builder_with_config(ResolverConfig::new(), provider)
            }
        }
    } else {
        let group: Vec<NameServerConfig> = servers
            .iter()
            .flat_map(|a| {
                [
                    NameServerConfig::new(*a, Protocol::Udp),
                    NameServerConfig::new(*a, Protocol::Tcp),
                ]
            })
            .collect();
        let config = ResolverConfig::from_parts(None, vec![], NameServerConfigGroup::from(group));
        TokioResolver::builder_with_config(config, provider)
    };
    let o: &mut ResolverOpts = builder.options_mut();
    o.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    o.cache_size = CACHE_SIZE;
    o.positive_max_ttl = Some(MAX_TTL);
    o.negative_max_ttl = Some(NEGATIVE_TTL);
    o.timeout = Duration::from_secs(3);
    o.attempts = 2;
    // `Built::listed` has already answered every name the file lists.
    o.use_hosts_file = ResolveHosts::Never;
    builder.build()
}

/// One slot of a source's in-flight count, given back on drop.
struct Slot<'a> {
    map: &'a Mutex<HashMap<IpAddr, usize>>,
    source: IpAddr,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.source) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.source);
            }
        }
    }
}

impl Resolver {
    /// A resolver for `servers` (empty: the host's configuration).
    pub fn new(servers: &[SocketAddr]) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new((None, Arc::new(build(servers)))),
            total: Semaphore::new(TOTAL),
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// The resolver for `config`: the one in use if it was built for this configuration, else a new
    /// one (re-reading `/etc/resolv.conf` and `/etc/hosts`, with an empty cache), so a reload picks up
    /// the host's resolver files and `egress.resolvers` as it picks up everything else.
    fn for_config(&self, config: &Arc<Config>) -> Arc<Built> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if !inner.0.as_ref().is_some_and(|c| Arc::ptr_eq(c, config)) {
            *inner = (
                Some(config.clone()),
                Arc::new(build(&config.egress.resolvers)),
            );
        }
        inner.1.clone()
    }

    fn take_slot(&self, source: IpAddr) -> Option<Slot<'_>> {
        let source = canonical_ip(source);
        let mut m = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let n = m.entry(source).or_insert(0);
        if *n >= PER_SOURCE {
            return None;
        }
        *n += 1;
        Some(Slot {
            map: &self.in_flight,
            source,
        })
    }

    /// The addresses of `name` (a normalised host name), looked up on behalf of `source` with the
    /// resolver `config` asks for.
    ///
    /// # Errors
    /// `Busy` when `source` has too many lookups in flight, `Failed` otherwise.
    pub async fn lookup(
        &self,
        config: &Arc<Config>,
        source: IpAddr,
        name: &str,
    ) -> Result<Vec<IpAddr>, ResolveError> {
        let _slot = self.take_slot(source).ok_or(ResolveError::Busy)?;
        let _permit = self
            .total
            .acquire()
            .await
            .map_err(|_| ResolveError::Failed)?;
        let resolver = self.for_config(config);
        // Fully qualified, so the host's search domains are never appended to a devbox's name.
        let Ok(fqdn) = Name::from_utf8(format!("{}.", name.trim_end_matches('.'))) else {
            return Err(ResolveError::Failed);
        };
        let listed = resolver.listed(&fqdn);
        if !listed.is_empty() {
            return Ok(listed);
        }
        match resolver.dns.lookup_ip(fqdn).await {
            Ok(l) => {
                let addrs: Vec<IpAddr> = l.iter().collect();
                if addrs.is_empty() {
                    Err(ResolveError::Failed)
                } else {
                    Ok(addrs)
                }
            }
            Err(_) => Err(ResolveError::Failed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal_config() -> Arc<Config> {
        Arc::new(
            crate::config::parse(
                "version = 1\n[gateway]\nurl = \"https://mcp.hub.internal/mcp\"\n",
                std::path::Path::new("/etc/mcp-hub/hub.toml"),
            )
            .unwrap(),
        )
    }

    #[tokio::test]
    async fn localhost_and_the_per_source_bound() {
        let cfg = minimal_config();
        let r = Resolver::new(&[]);
        let me: IpAddr = "10.1.2.3".parse().unwrap();
        let got = r.lookup(&cfg, me, "localhost").await.unwrap();
        assert!(got.iter().any(|a| a.is_loopback()), "{got:?}");
        let slots: Vec<_> = (0..PER_SOURCE).map(|_| r.take_slot(me).unwrap()).collect();
        assert_eq!(
            r.lookup(&cfg, me, "localhost").await,
            Err(ResolveError::Busy)
        );
        // Another source is not affected, and the slots come back.
        let other = "10.1.2.4".parse().unwrap();
        assert!(r.lookup(&cfg, other, "localhost").await.is_ok());
        drop(slots);
        assert!(r.lookup(&cfg, me, "localhost").await.is_ok());
        assert!(r.in_flight.lock().unwrap().is_empty());
    }

    /// A name the hosts file lists for one family only is answered from the file: no DNS query for
    /// the other family (the nameserver here counts what it receives).
    #[tokio::test]
    async fn hosts_file_names_never_reach_dns() {
        let cfg = minimal_config();
        let ns = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut hosts = Hosts::default();
        hosts
            .read_hosts_conf("10.0.0.7 only4.test\n".as_bytes())
            .unwrap();
        let r = Resolver::new(&[]);
        *r.inner.lock().unwrap() = (
            Some(cfg.clone()),
            Arc::new(Built {
                hosts,
                dns: build_dns(&[ns.local_addr().unwrap()]),
            }),
        );
        let me: IpAddr = "10.1.2.3".parse().unwrap();
        let got = r.lookup(&cfg, me, "only4.test").await.unwrap();
        assert_eq!(got, vec![IpAddr::from([10, 0, 0, 7])]);
        let mut buf = [0u8; 512];
        let asked = tokio::time::timeout(Duration::from_millis(300), ns.recv(&mut buf)).await;
        assert!(asked.is_err(), "a hosts-file name was sent to DNS");
        // A name the file does not list does go to DNS.
        let other = tokio::spawn(async move {
            let _ = r.lookup(&cfg, me, "elsewhere.test").await;
        });
        let asked = tokio::time::timeout(Duration::from_secs(5), ns.recv(&mut buf)).await;
        assert!(asked.is_ok(), "an unlisted name never reached DNS");
        other.abort();
    }
}
