//! End-to-end tests across binaries.

mod configuration_docs;
mod systemd;
mod user_install;
