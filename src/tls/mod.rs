//! TLS: the hub's own CA and the gateway's server certificate (`ca`), and upstream client trust (`client`).

pub mod ca;
pub mod client;

/// TLS setup failures.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA files are missing.
    #[error("no CA in {0}; run `mcp-hub ca init`")]
    NoCa(String),
    /// Reading or writing key material failed.
    #[error("{path}: {source}")]
    Io {
        /// File involved.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Certificate generation or parsing failed.
    #[error("certificate error: {0}")]
    Cert(String),
    /// The CA cannot sign for a configured hub host (`gateway.url`'s or `agent_gateway.url`'s).
    #[error(
        "the CA in {dir} is constrained to {constrained:?}, not the hub host {host:?} (gateway.url or agent_gateway.url); \
         a CA is never widened: move the old CA away, run `mcp-hub ca init`, and give devboxes the new ca.pem"
    )]
    WrongHost {
        /// CA directory.
        dir: String,
        /// What the CA permits.
        constrained: Vec<String>,
        /// The configured gateway host.
        host: String,
    },
    /// rustls rejected the configuration.
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
}
