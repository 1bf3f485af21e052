//! Integration tests of the shared library against the real local ClickHouse.

mod calendar;
mod journal;
mod schema;
