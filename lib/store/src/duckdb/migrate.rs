//! The DuckDB schema: `migrations/*.sql`, the tables of `lib/schema/migrations` with the same
//! names and columns in DuckDB types, applied once each in version order and recorded in
//! `schema_migrations` (as `flywheel migrate` does for ClickHouse).

use duckdb::Connection;

use crate::StoreError;

/// (version, name, SQL), in order.
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "otel_traces",
        include_str!("migrations/0001_otel_traces.sql"),
    ),
    (
        2,
        "llm_calls",
        include_str!("migrations/0002_llm_calls.sql"),
    ),
    (
        3,
        "ingest_batches",
        include_str!("migrations/0003_ingest_batches.sql"),
    ),
    (
        4,
        "feedback_signals",
        include_str!("migrations/0004_feedback_signals.sql"),
    ),
    (5, "alerts", include_str!("migrations/0005_alerts.sql")),
    (
        6,
        "insert_tokens",
        include_str!("migrations/0006_insert_tokens.sql"),
    ),
];

/// The schema version this build reads and writes.
pub fn required_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// The version the database is at (0 when it has no schema yet).
pub fn current_version(c: &Connection) -> Result<i32, StoreError> {
    let exists: bool = c.query_row(
        "SELECT count() > 0 FROM information_schema.tables WHERE table_name = 'schema_migrations'",
        [],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(0);
    }
    let v: Option<i32> = c.query_row("SELECT max(version) FROM schema_migrations", [], |r| {
        r.get(0)
    })?;
    Ok(v.unwrap_or(0))
}

/// Applies the missing migrations, each in its own transaction; returns their versions.
pub fn migrate(c: &mut Connection) -> Result<Vec<i32>, StoreError> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             name VARCHAR NOT NULL,
             applied_at TIMESTAMP NOT NULL DEFAULT current_timestamp
         )",
    )?;
    let current = current_version(c)?;
    if current > required_version() {
        return Err(StoreError::Task(format!(
            "the DuckDB file's schema is at version {current}, newer than this build's {}: \
             it was written by a newer flywheel; run that one (or a newer build)",
            required_version()
        )));
    }
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = c.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?, ?)",
            duckdb::params![version, name],
        )?;
        tx.commit()?;
        applied.push(*version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_a_newer_schema() {
        let mut c = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut c).unwrap().len(), MIGRATIONS.len());
        assert!(migrate(&mut c).unwrap().is_empty());
        let newer = required_version() + 1;
        c.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?, 'from the future')",
            [newer],
        )
        .unwrap();
        let err = migrate(&mut c).unwrap_err().to_string();
        assert!(err.contains(&format!("version {newer}, newer")), "{err}");
    }
}
