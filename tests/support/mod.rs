//! Test harness: start a hub in-process, an upstream that records what it saw, and a TLS client.

pub(crate) mod client;
pub(crate) mod hub;
pub(crate) mod upstream;

pub(crate) use hub::Hub;
pub(crate) use upstream::Upstream;

/// The built `mcp-hub` binary.
pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_mcp-hub");

/// Run `mcp-hub --config CONFIG ARGS...` to completion.
pub(crate) fn cli(config: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(BIN)
        .args(["--config", config])
        .args(args)
        .output()
        .expect("mcp-hub runs")
}
