//! End-to-end tests across binaries.

mod cluster;
mod configuration_docs;
mod docs;
mod operator;
mod queue_observability;
mod systemd;
mod user_install;
