//! The MCP gateway: authentication, tool filtering, credential injection and faithful relay of the
//! streamable HTTP transport (all revisions from 2025-03-26 to 2026-07-28).

pub mod body;
pub mod denial;
pub mod gateway;
pub mod jsonrpc;
pub mod refresh;
pub mod relay;
pub mod respond;
pub mod session;

/// MCP header names, as constants: lookups by `HeaderName` skip parsing and hashing a string each time.
pub mod headers {
    use http::HeaderName;

    /// `Mcp-Session-Id`.
    pub const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
    /// `MCP-Protocol-Version`.
    pub const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
    /// `Mcp-Method` (2026-07-28).
    pub const METHOD: HeaderName = HeaderName::from_static("mcp-method");
    /// `Mcp-Name` (2026-07-28).
    pub const NAME: HeaderName = HeaderName::from_static("mcp-name");
}
