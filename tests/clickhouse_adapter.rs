//! Tests of the local ClickHouse HTTP adapter (deploy/local/clickhouse_adapter.py) through the
//! real `clickhouse` client crate, with its default LZ4 compression: the adapter is test
//! infrastructure that later tests rely on, so it is tested itself. Against a real ClickHouse
//! server (CLICKHOUSE_URL) the same test passes unchanged.

use clickhouse::{Client, Row};
use serde::{Deserialize, Serialize};

#[derive(Debug, Row, Serialize, Deserialize, PartialEq)]
struct Item {
    id: u64,
    name: String,
    tags: Vec<(String, String)>,
    ts: i64,
}

fn client() -> Client {
    let url = std::env::var("CLICKHOUSE_URL").expect(
        "CLICKHOUSE_URL is not set: run the tests through deploy/local/test.sh, which starts the services",
    );
    Client::default().with_url(url)
}

async fn insert(client: &Client, table: &str, rows: std::ops::Range<u64>, token: &str) {
    let mut insert = client
        .insert::<Item>(table)
        .await
        .unwrap()
        .with_setting("insert_deduplication_token", token);
    for id in rows {
        insert
            .write(&Item {
                id,
                name: format!("item-{id}"),
                tags: vec![("k".into(), id.to_string())],
                ts: i64::try_from(id).unwrap() * 1000,
            })
            .await
            .unwrap();
    }
    insert.end().await.unwrap();
}

#[tokio::test]
async fn rowbinary_lz4_insert_dedup_token_query_and_errors() {
    let client = client();
    let db = format!("adapter_test_{}", std::process::id());
    client
        .query(&format!("CREATE DATABASE IF NOT EXISTS {db}"))
        .execute()
        .await
        .unwrap();
    let table = format!("{db}.items");
    // The crate quotes the insert table as one identifier: name the database on the client.
    let in_db = client.clone().with_database(&db);
    client
        .query(&format!(
            "CREATE TABLE {table} (id UInt64, name String, tags Map(LowCardinality(String), String), ts Int64)
             ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 100"
        ))
        .execute()
        .await
        .unwrap();

    insert(&in_db, "items", 0..50_000, "batch-1").await;
    insert(&in_db, "items", 0..50_000, "batch-1").await; // a retried batch: deduplicated
    insert(&in_db, "items", 50_000..60_000, "batch-2").await;

    let count: u64 = client
        .query(&format!("SELECT count() FROM {table}"))
        .fetch_one()
        .await
        .unwrap();
    assert_eq!(count, 60_000);
    let rows: Vec<Item> = client
        .query(&format!(
            "SELECT ?fields FROM {table} WHERE id IN (7, 59999) ORDER BY id"
        ))
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].name, "item-7");
    assert_eq!(rows[1].tags, vec![("k".to_string(), "59999".to_string())]);
    assert_eq!(rows[1].ts, 59_999_000);

    let err = client
        .query(&format!("SELECT nope FROM {table}"))
        .fetch_all::<u64>()
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("UNKNOWN_IDENTIFIER") || err.to_string().contains("nope"),
        "{err}"
    );

    client
        .query(&format!("DROP DATABASE {db}"))
        .execute()
        .await
        .unwrap();
}
