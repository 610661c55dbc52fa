//! `mcp-hub init`: the smallest valid `hub.toml`, so that a newcomer's first edit has a file to edit.
//!
//! The file is validated exactly as start-up validates it before it is written, and an existing file is
//! never replaced.

use std::path::Path;

use super::edit::ManageError;
use crate::config;
use crate::state::fsutil;

/// What `init` writes into the new file.
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// Where devboxes, issued tokens, the token key and the CA are kept.
    #[arg(long, default_value = "/var/lib/mcp-hub")]
    pub state_dir: String,
    /// The gateway's listening address.
    #[arg(long, default_value = "0.0.0.0:8443")]
    pub listen: String,
    /// RL_MCP_URL as devboxes see it; its host is the name on the hub's certificate.
    #[arg(long, default_value = "https://mcp.hub.internal:8443/mcp")]
    pub url: String,
}

/// The text of a minimal `hub.toml`.
pub fn minimal(a: &InitArgs) -> String {
    let q = |s: &str| toml_edit::Value::from(s).to_string();
    format!(
        "# mcp-hub configuration, written by `mcp-hub init`. Every setting, with comments, is in conf/hub.toml\n\
         # in the source tree. Validated strictly; check with `mcp-hub check`. A running hub reloads this\n\
         # file within a second of a change.\n\
         version = 1\n\n\
         [hub]\n\
         # Devboxes, issued tokens, the token key and the CA live here (created 0700 on first start).\n\
         state_dir = {}\n\n\
         [gateway]\n\
         listen = {}\n\
         # RL_MCP_URL as devboxes see it. Its host is the name on the hub's certificate.\n\
         url = {}\n\n\
         # Upstream MCP servers: `mcp-hub mcp-config create` appends them here.\n",
        q(&a.state_dir),
        q(&a.listen),
        q(&a.url),
    )
}

/// Write a minimal `hub.toml` at `config_file` (creating its directory), refusing to replace one.
///
/// # Errors
/// `Invalid` if the arguments do not make a valid config, `Conflict` if the file exists, `Io` otherwise.
pub fn init(config_file: &Path, a: &InitArgs) -> Result<(), ManageError> {
    let text = minimal(a);
    config::parse(&text, config_file)?;
    if let Some(dir) = config_file.parent().filter(|d| !d.as_os_str().is_empty()) {
        fsutil::ensure_dir(dir, 0o755).map_err(|source| ManageError::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
    }
    fsutil::create_new(config_file, text.as_bytes(), 0o644).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            ManageError::Conflict(format!(
                "{} already exists; init never replaces a config",
                config_file.display()
            ))
        } else {
            ManageError::Io {
                context: format!("writing {}", config_file.display()),
                source: e,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> InitArgs {
        InitArgs {
            state_dir: "/var/lib/mcp-hub".into(),
            listen: "0.0.0.0:8443".into(),
            url: "https://mcp.hub.internal:8443/mcp".into(),
        }
    }

    #[test]
    fn the_minimal_file_is_valid_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("etc/hub.toml");
        init(&f, &defaults()).unwrap();
        let c = config::load(&f).unwrap();
        assert_eq!(
            c.gateway.url.to_string(),
            "https://mcp.hub.internal:8443/mcp"
        );
        assert!(c.mcp_configs.is_empty());
        let before = std::fs::read(&f).unwrap();
        let again = InitArgs {
            state_dir: "/elsewhere".into(),
            ..defaults()
        };
        assert!(matches!(init(&f, &again), Err(ManageError::Conflict(_))));
        assert_eq!(std::fs::read(&f).unwrap(), before);
    }

    #[test]
    fn arguments_that_make_an_invalid_config_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hub.toml");
        let bad = InitArgs {
            url: "ftp://x\"\n[evil]".into(),
            ..defaults()
        };
        assert!(matches!(init(&f, &bad), Err(ManageError::Invalid(_))));
        assert!(!f.exists());
    }
}
