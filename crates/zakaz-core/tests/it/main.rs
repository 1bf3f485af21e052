//! Integration tests of the shared library against the real local ClickHouse.

mod journal;
mod schema;
