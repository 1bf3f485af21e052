//! Integration tests of the shared library against the real local ClickHouse.

mod ads;
mod calendar;
mod checks;
mod cluster;
mod insert;
mod journal;
mod schema;
