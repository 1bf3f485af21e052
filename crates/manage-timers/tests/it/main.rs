//! `manage-timers` as an operator runs it: real process, real ClickHouse, real
//! `systemd-analyze`. The end-to-end test inside a booted systemd is in `tests/` (zakaz-e2e).

mod cli;
mod units;
