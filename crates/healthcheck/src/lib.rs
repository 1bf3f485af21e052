//! `healthcheck`: HTTP health and freshness endpoints for monitoring.
//!
//! Not built yet (no issue has asked for it): the command accepts the common settings and
//! says so. The shared pieces it will use (settings, ClickHouse, journal, HTTP retries, the
//! job table) are in `zakaz-core`.

zakaz_core::placeholder_binary!(
    "healthcheck",
    "HTTP health and freshness endpoints for monitoring"
);
