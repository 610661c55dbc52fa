//! The hub's TLS front door: one listener (and every intercepted devbox connection) serving both
//! gateways, told apart per request by host.
//!
//! The MCP gateway and the agent gateway share the certificate, the workers, the idle watchdog and the
//! drain ([`listener`]); [`Front`] hands each request to the gateway its host names. Routing is per
//! request, not per connection: a client may reuse one h2 connection for both hosts (they share a
//! certificate and an address), and each request still reaches the gateway it names.

pub mod listener;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};

use crate::body::Body;
use crate::mcp::gateway::Gateway as McpGateway;
use crate::runtime::Live;
use crate::runtime::conn_auth::ConnAuth;
use crate::runtime::snapshot::{AgentBinding, Binding};

/// Both gateways of one worker.
pub struct Front {
    state: Arc<Live>,
    mcp: McpGateway,
    agent: crate::agent::Gateway,
}

/// What a connection keeps between its requests: each gateway's last verified token.
#[derive(Default)]
pub struct Conn {
    mcp: ConnAuth<Binding>,
    agent: ConnAuth<AgentBinding>,
}

impl Front {
    /// Both gateways, serving whatever snapshot `state` holds at each request.
    pub fn new(state: Arc<Live>) -> Self {
        Self {
            mcp: McpGateway::new(state.clone()),
            agent: crate::agent::Gateway::new(state.clone()),
            state,
        }
    }

    /// How long a client may take to send a request, and may keep a connection idle.
    pub fn client_timeout(&self) -> std::time::Duration {
        self.state.load().config.gateway.client_timeout
    }

    /// Serve one request from `peer` with the gateway its host names; anything that is not the agent
    /// gateway's host goes to the MCP gateway, which refuses hosts that are not its own.
    pub async fn handle(
        &self,
        req: Request<hyper::body::Incoming>,
        peer: SocketAddr,
        conn: &Conn,
    ) -> Response<Body> {
        // One snapshot decides the route and serves the request.
        let snap = self.state.load_full();
        if is_agent(&snap, &req) {
            return self.agent.handle(snap, req, peer, &conn.agent).await;
        }
        self.mcp.handle(snap, req, peer, &conn.mcp).await
    }
}

/// Whether `req` names the agent gateway (its host, and its path prefix when it has one).
fn is_agent<B>(snap: &crate::runtime::Snapshot, req: &Request<B>) -> bool {
    let Some(a) = &snap.config.agent_gateway else {
        return false;
    };
    request_host(req).is_some_and(|h| h.eq_ignore_ascii_case(&a.host))
        && under(req.uri().path(), &a.path_prefix)
}

/// Whether `path` is `prefix` or below it (every path is below the empty prefix).
pub fn under(path: &str, prefix: &str) -> bool {
    prefix.is_empty()
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The host a request names: h2's `:authority` (in the URI), else `Host`, without port or brackets.
fn request_host<B>(req: &Request<B>) -> Option<&str> {
    let authority = match req.uri().authority() {
        Some(a) => a.as_str(),
        None => req.headers().get(http::header::HOST)?.to_str().ok()?,
    };
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map_or(v6, |(h, _)| h),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    Some(host.strip_suffix('.').unwrap_or(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_read_from_authority_or_host() {
        let r = Request::get("https://Agents.Hub.Internal:8443/v1/messages")
            .body(())
            .unwrap();
        assert_eq!(request_host(&r), Some("Agents.Hub.Internal"));
        let r = Request::get("/v1/messages")
            .header("host", "agents.hub.internal.")
            .body(())
            .unwrap();
        assert_eq!(request_host(&r), Some("agents.hub.internal"));
        let r = Request::get("/")
            .header("host", "[fd00::1]:8443")
            .body(())
            .unwrap();
        assert_eq!(request_host(&r), Some("fd00::1"));
        let r = Request::get("/").body(()).unwrap();
        assert_eq!(request_host(&r), None);
        assert!(under("/agents/v1/messages", "/agents") && under("/agents", "/agents"));
        assert!(!under("/agentsx/v1", "/agents") && !under("/mcp", "/agents"));
        assert!(under("/anything", ""));
    }
}
