//! Print the single-server schema as the migrations state it, statement by statement (JSON:
//! `[{"version": N, "sql": "…{db}…"}]`). `scripts/check-clickhouse-new.sh` applies it to a
//! current ClickHouse (chdb-core) and compares the tables with Debian's 18.16.

fn main() {
    let statements: Vec<serde_json::Value> =
        zakaz_core::schema::schema_statements(zakaz_core::schema::MIGRATIONS)
            .into_iter()
            .map(|(version, sql)| serde_json::json!({"version": version, "sql": sql}))
            .collect();
    println!(
        "{}",
        serde_json::to_string_pretty(&statements).expect("JSON")
    );
}
