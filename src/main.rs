//! `mcp-hub`: parse the command line, set up logging, run, and map errors to exit codes
//! (64 usage, 78 invalid configuration, 1 anything else).

mod cli;

use std::process::ExitCode;

use clap::Parser;
use mcp_hub::config::ConfigError;
use mcp_hub::ops::edit::ManageError;
use mcp_hub::ops::start::StartError;

/// mimalloc: glibc malloc/free were the largest item in the gateway's profile under load (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EX_USAGE: u8 = 64;
const EX_CONFIG: u8 = 78;

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("MCP_HUB_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Under systemd (JOURNAL_STREAM set) log JSON, one event per line; on a terminal, human-readable.
    let json = std::env::var_os("JOURNAL_STREAM").is_some()
        || std::env::var("MCP_HUB_LOG_FORMAT").is_ok_and(|v| v == "json");
    // Colour only on a terminal: log files and journald must not get escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if json {
        b.json().flatten_event(true).init();
    } else {
        b.init();
    }
}

fn config_error(e: &anyhow::Error) -> Option<&ConfigError> {
    e.chain().find_map(|c| {
        c.downcast_ref::<ConfigError>()
            .or_else(|| match c.downcast_ref::<StartError>() {
                Some(StartError::Config(x)) => Some(x),
                _ => None,
            })
            .or_else(|| match c.downcast_ref::<ManageError>() {
                Some(ManageError::Invalid(x)) => Some(x),
                _ => None,
            })
    })
}

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EX_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(cli::dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(ManageError::BadInput(m)) = e.downcast_ref::<ManageError>() {
                eprintln!("error: {m}");
                ExitCode::from(EX_USAGE)
            } else if let Some(c) = config_error(&e) {
                eprintln!("error: {c}");
                for i in c.issues() {
                    eprintln!("  {i}");
                }
                ExitCode::from(EX_CONFIG)
            } else {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}
