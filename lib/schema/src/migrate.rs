//! Versioned, idempotent migrations of the Flywheel database (`flywheel migrate`).
//!
//! Each migration is a SQL file under `lib/schema/migrations/`, embedded at build time, applied
//! once in version order and recorded in `<db>.schema_migrations`. Statements use `IF NOT EXISTS`
//! so a migration interrupted half-way can simply run again. Placeholders:
//!
//! | placeholder | single server | `clickhouse.cluster = "c"` |
//! |---|---|---|
//! | `${DB}` | database name | database name |
//! | `${ON_CLUSTER}` | empty | `ON CLUSTER c` |
//! | `${MERGETREE}` | `MergeTree()` | `ReplicatedMergeTree()` (server default path macros) |
//! | `${REPLACING_MERGETREE}` | `ReplacingMergeTree` | `ReplicatedReplacingMergeTree` |
//! | `${TTL_<TABLE>}` | `TTL ...` from `clickhouse.ttl_days`, or empty | same |
//! | `${LOCAL}` | empty | `_local` (the shard-local table behind a Distributed one) |
//! | `${DISTRIBUTED <table> <sharding key>};` | nothing | `CREATE TABLE <table> AS <table>_local ENGINE = Distributed(c, db, <table>_local, <key>)` |
//!
//! In cluster mode every table is created on each shard as `<name>_local` (Replicated engine)
//! with a Distributed `<name>` in front of it, so readers and the ingester use the same names in
//! both modes. Sharding keys keep a trace (and a Kafka partition's batch markers) on one shard,
//! which deduplication relies on.

use crate::config::ClickHouseConfig;

/// Tables that accept a TTL (`clickhouse.ttl_days`, on either store backend).
pub const TTL_TABLES: [&str; 4] = ["otel_traces", "llm_calls", "feedback", "signals"];
/// Each table of [`TTL_TABLES`] with the time column its TTL applies to: a row expires when
/// that column is more than the configured days before now (ClickHouse: the table's `TTL`
/// clause; DuckDB: the ingester's periodic delete, `flywheel_store::IngestStore::expire`).
pub const TTL_COLUMNS: [(&str, &str); 4] = [
    ("otel_traces", "Timestamp"),
    ("llm_calls", "timestamp"),
    ("feedback", "timestamp"),
    ("signals", "timestamp"),
];

/// One schema version.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "otel_traces",
        sql: include_str!("../migrations/0001_otel_traces.sql"),
    },
    Migration {
        version: 2,
        name: "llm_calls",
        sql: include_str!("../migrations/0002_llm_calls.sql"),
    },
    Migration {
        version: 3,
        name: "ingest_batches",
        sql: include_str!("../migrations/0003_ingest_batches.sql"),
    },
    Migration {
        version: 4,
        name: "feedback_signals",
        sql: include_str!("../migrations/0004_feedback_signals.sql"),
    },
    Migration {
        version: 5,
        name: "alerts",
        sql: include_str!("../migrations/0005_alerts.sql"),
    },
];

/// The schema version this build needs.
pub fn required_version() -> u32 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// A migration or schema check failure.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("migration {version} ({name}) failed: {source}\nstatement:\n{statement}")]
    Migration {
        version: u32,
        name: &'static str,
        statement: String,
        source: clickhouse::error::Error,
    },
    #[error(
        "database `{database}` is at schema version {current}, this build needs {required}: run `flywheel migrate`"
    )]
    Outdated {
        database: String,
        current: u32,
        required: u32,
    },
}

/// Renders a migration's SQL for `config`.
pub fn render(sql: &str, config: &ClickHouseConfig) -> String {
    let clustered = !config.cluster.is_empty();
    let mut out = render_distributed(sql, config)
        .replace("${LOCAL}", if clustered { "_local" } else { "" })
        .replace("${DB}", &config.database)
        .replace(
            "${ON_CLUSTER}",
            &if clustered {
                format!("ON CLUSTER {}", config.cluster)
            } else {
                String::new()
            },
        )
        .replace(
            "${MERGETREE}",
            if clustered {
                "ReplicatedMergeTree()"
            } else {
                "MergeTree()"
            },
        )
        .replace(
            "${REPLACING_MERGETREE}",
            if clustered {
                "ReplicatedReplacingMergeTree"
            } else {
                "ReplacingMergeTree"
            },
        );
    for (table, column) in TTL_COLUMNS {
        let placeholder = format!("${{TTL_{}}}", table.to_ascii_uppercase());
        let ttl = config.ttl_days.get(table).map_or(String::new(), |days| {
            format!("TTL toDateTime({column}) + toIntervalDay({days})")
        });
        out = out.replace(&placeholder, &ttl);
    }
    out
}

/// Expands `${DISTRIBUTED <table> <key>}` directives (empty on a single server).
fn render_distributed(sql: &str, config: &ClickHouseConfig) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(start) = rest.find("${DISTRIBUTED ") {
        out.push_str(&rest[..start]);
        let after = &rest[start + "${DISTRIBUTED ".len()..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let (table, key) = after[..end]
            .trim()
            .split_once(' ')
            .unwrap_or((after[..end].trim(), "rand()"));
        if !config.cluster.is_empty() {
            let (c, db) = (&config.cluster, &config.database);
            out.push_str(&format!(
                "CREATE TABLE IF NOT EXISTS {db}.{table} ON CLUSTER {c} AS {db}.{table}_local \
                 ENGINE = Distributed({c}, {db}, {table}_local, {})",
                key.trim()
            ));
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The statements of a rendered migration (separated by `;` at the end of a line).
pub fn statements(rendered: &str) -> Vec<String> {
    rendered
        .split(";\n")
        .map(|s| {
            s.lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n")
                .trim()
                .trim_end_matches(';')
                .to_string()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

fn server_client(config: &ClickHouseConfig) -> clickhouse::Client {
    // Without a default database: it may not exist yet.
    let mut c = clickhouse::Client::default()
        .with_url(&config.url)
        .with_user(&config.user);
    if !config.password.is_empty() {
        c = c.with_password(&config.password);
    }
    c
}

/// The applied schema version (0 for a database Flywheel never migrated).
pub async fn current_version(config: &ClickHouseConfig) -> Result<u32, SchemaError> {
    let client = server_client(config);
    let exists: u8 = client
        .query("SELECT count() > 0 FROM system.tables WHERE database = ? AND name = 'schema_migrations'")
        .bind(&config.database)
        .fetch_one()
        .await?;
    if exists == 0 {
        return Ok(0);
    }
    let version: u32 = client
        .query(&format!(
            "SELECT max(version) FROM {}.schema_migrations",
            config.database
        ))
        .fetch_one()
        .await?;
    Ok(version)
}

/// Fails unless the database is at least at [`required_version`].
pub async fn check(config: &ClickHouseConfig) -> Result<(), SchemaError> {
    let current = current_version(config).await?;
    let required = required_version();
    if current < required {
        return Err(SchemaError::Outdated {
            database: config.database.clone(),
            current,
            required,
        });
    }
    Ok(())
}

/// Applies every migration newer than the database's version. Returns the versions applied.
pub async fn migrate(config: &ClickHouseConfig) -> Result<Vec<u32>, SchemaError> {
    let client = server_client(config);
    let db = &config.database;
    let on_cluster = if config.cluster.is_empty() {
        String::new()
    } else {
        format!("ON CLUSTER {}", config.cluster)
    };
    client
        .query(&format!("CREATE DATABASE IF NOT EXISTS {db} {on_cluster}"))
        .execute()
        .await?;
    client
        .query(&render(
            "CREATE TABLE IF NOT EXISTS ${DB}.schema_migrations ${ON_CLUSTER} (
                version UInt32, name String, applied_at DateTime64(3) DEFAULT now64(3)
             ) ENGINE = ${REPLACING_MERGETREE} ORDER BY version",
            config,
        ))
        .execute()
        .await?;
    let current = current_version(config).await?;
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        for statement in statements(&render(m.sql, config)) {
            client
                .query(&statement)
                .execute()
                .await
                .map_err(|source| SchemaError::Migration {
                    version: m.version,
                    name: m.name,
                    statement: statement.clone(),
                    source,
                })?;
        }
        client
            .query(&format!(
                "INSERT INTO {db}.schema_migrations (version, name) VALUES (?, ?)"
            ))
            .bind(m.version)
            .bind(m.name)
            .execute()
            .await?;
        tracing::info!(version = m.version, name = m.name, "applied migration");
        applied.push(m.version);
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_increasing_and_contiguous() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
        }
    }

    #[test]
    fn renders_single_server_and_cluster() {
        let mut config = ClickHouseConfig::default();
        config.ttl_days.insert("otel_traces".into(), 30);
        let sql = render(MIGRATIONS[0].sql, &config);
        assert!(!sql.contains("${"), "unrendered placeholder");
        assert!(sql.contains("TTL toDateTime(Timestamp) + toIntervalDay(30)"));
        assert!(!sql.contains("ON CLUSTER"));
        for m in MIGRATIONS {
            let sql = statements(&render(m.sql, &config)).join(";\n");
            assert!(!sql.contains("Distributed"), "{}", m.name);
            assert!(!sql.contains("_local"), "{}", m.name);
        }
        config.cluster = "prod".into();
        let mut distributed = Vec::new();
        for m in MIGRATIONS {
            let sql = render(m.sql, &config);
            assert!(!sql.contains("${"), "{}: unrendered placeholder", m.name);
            for statement in statements(&sql) {
                if statement.starts_with("CREATE") {
                    assert!(statement.contains("ON CLUSTER prod"), "{statement}");
                }
                assert!(!statement.contains(" MergeTree()"), "{statement}");
                if statement.contains("ENGINE = Distributed") {
                    distributed.push(statement.clone());
                } else if statement.starts_with("CREATE TABLE") {
                    assert!(
                        statement.contains("_local"),
                        "shard table not local: {statement}"
                    );
                }
                if statement.starts_with("CREATE MATERIALIZED VIEW") {
                    assert!(
                        statement.contains("FROM flywheel.otel_traces_local"),
                        "{statement}"
                    );
                    assert!(
                        statement.contains("TO flywheel.otel_traces_trace_id_ts_local"),
                        "{statement}"
                    );
                }
            }
        }
        for table in [
            "otel_traces",
            "otel_traces_trace_id_ts",
            "llm_calls",
            "ingest_batches",
            "feedback",
            "signals",
        ] {
            assert!(
                distributed.iter().any(|d| d.contains(&format!(
                    "flywheel.{table} ON CLUSTER prod AS flywheel.{table}_local"
                ))),
                "no Distributed table for {table}: {distributed:#?}"
            );
        }
    }
}
