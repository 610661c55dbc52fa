//! The appliance: start-up and shutdown, live reload, systemd, the admin HTTP listener (health and
//! metrics), the admin socket, and the operator edits the CLI and the socket apply.

pub mod admin;
pub mod edit;
pub mod init;
pub mod reload;
pub mod socket;
pub mod start;
pub mod systemd;
