//! The config and state-file loaders: hub.toml and devboxes.toml, from any text.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = mcp_hub::config::parse(text, Path::new("/etc/mcp-hub/hub.toml"));
    let _ = mcp_hub::state::devboxes::Devboxes::parse(
        text,
        Path::new("/var/lib/mcp-hub/devboxes.toml"),
    );
});
