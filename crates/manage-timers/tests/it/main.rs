//! `manage-timers` as an operator runs it: real process, real ClickHouse.

mod cli;
