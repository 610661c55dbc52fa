//! The MCP gateway: authentication, tool filtering, credential injection and faithful relay of the
//! streamable HTTP transport (all revisions from 2025-03-26 to 2026-07-28).

pub mod credentials;
pub mod filter;
pub mod gateway;
pub mod jsonrpc;
pub mod relay;
pub mod respond;
pub mod session;
pub mod sse;
pub mod upstream;
