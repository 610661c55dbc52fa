//! Test harness: start a hub in-process, an upstream that records what it saw, and a TLS client.

pub(crate) mod client;
pub(crate) mod hub;
pub(crate) mod upstream;

pub(crate) use hub::Hub;
pub(crate) use upstream::Upstream;
