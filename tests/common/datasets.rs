#![allow(dead_code)]
//! Fixture for dataset export tests, on either store backend ([`Backend`]: a private ClickHouse
//! database, or a DuckDB file in a temporary directory): crafted `llm_calls`, `feedback` and
//! `signals` rows for projects `a` and `b` (written through the store's `insert`: ingestion is
//! tested elsewhere), `flywheel export` / `flywheel api` runners for that backend, a raw
//! HTTP/1.1 client that sees chunks and trailers, and a Parquet reader (pyarrow).
//! [`on_both_backends!`] runs each test body once per backend.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use flywheel_schema::rows::{FeedbackRow, LlmCallRow, SignalRow};
use flywheel_store::{AccessMode, ClickHouseStore, DuckDbStore, RowBatch, Store};

use crate::common::ingest::{clickhouse_url, Pipeline};
use crate::common::{free_port, http_get_status, wait_until};

/// 2026-11-15T00:00:00Z.
pub const BASE: i64 = 1_794_700_800_000_000_000;
const SEC: i64 = 1_000_000_000;

pub fn trace(n: u32) -> String {
    format!("{n:032x}")
}

pub fn span(n: u32) -> String {
    format!("{n:016x}")
}

pub fn semconv(role: &str, text: &str) -> String {
    serde_json::json!([{"role": role, "parts": [{"type": "text", "content": text}]}]).to_string()
}

pub fn call(project: &str, n: u32, conversation: &str, input: &str, output: &str) -> LlmCallRow {
    LlmCallRow {
        timestamp: BASE + i64::from(n) * SEC,
        project: project.into(),
        trace_id: trace(n),
        span_id: span(n),
        model: "gpt-4o-mini".into(),
        conversation_id: conversation.into(),
        user_id: format!("user-{n}"),
        input_messages: input.into(),
        output_messages: output.into(),
        received_at: BASE,
        ..LlmCallRow::default()
    }
}

pub fn feedback(id: &str, project: &str, name: &str, ids: (&str, &str, &str)) -> FeedbackRow {
    FeedbackRow {
        id: id.into(),
        project: project.into(),
        timestamp: BASE + 100 * SEC,
        trace_id: ids.0.into(),
        span_id: ids.1.into(),
        conversation_id: ids.2.into(),
        name: name.into(),
        source: "human".into(),
        origin: "api".into(),
        received_at: BASE + 100 * SEC,
        ..FeedbackRow::default()
    }
}

pub fn signal(id: &str, kind: &str, n: u32, conversation: &str) -> SignalRow {
    SignalRow {
        id: id.into(),
        project: "a".into(),
        timestamp: BASE + (i64::from(n) * 10 + 5) * SEC / 10,
        trace_id: trace(n),
        span_id: span(n),
        conversation_id: conversation.into(),
        signal_type: kind.into(),
        source: "api".into(),
        origin: "api".into(),
        received_at: BASE + 200 * SEC,
        ..SignalRow::default()
    }
}

pub const CAPITAL: &str = "What is the capital of France?";
pub const PII_INPUT: &str =
    "Summarise: mail jane.doe@example.com or call +1 415 555 0100 from 10.1.2.3";
pub const PII_OUTPUT: &str = "Jane (jane.doe@example.com) paid with 4111 1111 1111 1111 using \
    key sk-proj-abcdefghijklmnopqrstuvwxyz0123. Near misses kept: version 1.2.3, date \
    2026-11-28, ref 4111 1111 1111 1112, user at example dot com, a skilled sketch.";
pub const PROJECT_B_SECRET: &str = "PROJECT-B-ONLY answer";

/// The store implementation a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    ClickHouse,
    DuckDb,
}

/// Defines, for each named `fn name(backend: Backend)` of the test file, one test per backend:
/// `clickhouse::name` and `duckdb::name` (`async` for `async fn`s, on tokio).
macro_rules! on_both_backends {
    (sync: $($name:ident),* $(,)?) => {
        mod clickhouse {
            $(#[test] fn $name() { super::$name(super::Backend::ClickHouse) })*
        }
        mod duckdb {
            $(#[test] fn $name() { super::$name(super::Backend::DuckDb) })*
        }
    };
    (async: $($name:ident),* $(,)?) => {
        mod clickhouse {
            $(#[tokio::test(flavor = "multi_thread")]
              async fn $name() { super::$name(super::Backend::ClickHouse).await })*
        }
        mod duckdb {
            $(#[tokio::test(flavor = "multi_thread")]
              async fn $name() { super::$name(super::Backend::DuckDb).await })*
        }
    };
}
pub(crate) use on_both_backends;

/// A store of one backend for one test: a private ClickHouse database (named by `pipeline`),
/// or a DuckDB file in a temporary directory.
pub struct Db {
    pub backend: Backend,
    pub pipeline: Pipeline,
    dir: Option<tempfile::TempDir>,
}

impl Db {
    /// An empty store (ClickHouse: not migrated yet, see [`fixture_database`]).
    pub fn new(backend: Backend) -> Self {
        let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
        let dir = (backend == Backend::DuckDb).then(|| tempfile::tempdir().unwrap());
        Self {
            backend,
            pipeline: Pipeline::new(&brokers, &clickhouse_url()),
            dir,
        }
    }

    /// The ClickHouse backend on `pipeline`'s server and database.
    pub fn clickhouse(pipeline: Pipeline) -> Self {
        Self {
            backend: Backend::ClickHouse,
            pipeline,
            dir: None,
        }
    }

    pub fn duckdb_path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("flywheel.duckdb"))
    }

    /// Environment selecting this store for a `flywheel` process.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("FLYWHEEL_CLICKHOUSE__URL", self.pipeline.clickhouse.clone()),
            (
                "FLYWHEEL_CLICKHOUSE__DATABASE",
                self.pipeline.database.clone(),
            ),
        ];
        if let Some(path) = self.duckdb_path() {
            env.push(("FLYWHEEL_STORE__BACKEND", "duckdb".into()));
            env.push(("FLYWHEEL_STORE__PATH", path.display().to_string()));
        }
        env
    }

    /// The store, for writing. A DuckDB file is locked while it is open: drop the store before
    /// a `flywheel` process opens the file.
    pub fn store(&self) -> Arc<dyn Store> {
        match self.duckdb_path() {
            None => Arc::new(ClickHouseStore::new(self.pipeline.client())),
            Some(path) => Arc::new(DuckDbStore::open(&path, AccessMode::ReadWrite).unwrap()),
        }
    }

    /// Writes `batch` through the store (closed again afterwards).
    pub async fn insert(&self, batch: RowBatch) {
        self.store().insert(&batch).await.unwrap();
    }

    pub async fn drop_database(&self) {
        if self.backend == Backend::ClickHouse {
            self.pipeline.drop_database().await;
        }
    }
}

/// Inserts the fixture rows into `db` (migrated), in one batch.
pub async fn insert_fixture(db: &Db) {
    let capital_in = serde_json::json!([
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": CAPITAL}]},
    ])
    .to_string();
    let haiku = |text: &str| serde_json::json!([{"role": "user", "content": text}]).to_string();
    let openai_out =
        |text: &str| serde_json::json!([{"role": "assistant", "content": text}]).to_string();
    let paris = call("a", 2, "c1", &capital_in, &semconv("assistant", "Paris."));
    let mut b2 = call(
        "a",
        4,
        "c3",
        &haiku(" Write a  haiku about Rust.\n"),
        &openai_out("Segfault at midnight"),
    );
    b2.model = "claude-sonnet-4".into();
    let calls = vec![
        call("a", 1, "c1", &capital_in, &semconv("assistant", "Lyon.")),
        paris.clone(),
        // The same span delivered twice: one call after FINAL.
        paris,
        call(
            "a",
            3,
            "c2",
            &haiku("Write a haiku about Rust."),
            &openai_out("Borrow checker hums"),
        ),
        b2,
        call("a", 5, "c4", PII_INPUT, &semconv("assistant", PII_OUTPUT)),
        // Same prompt and answer as call 2 in another conversation: a duplicate.
        call("a", 6, "c5", &capital_in, &semconv("assistant", "Paris.")),
        // Content not captured.
        call("a", 7, "c6", &haiku("Anything?"), ""),
        call(
            "b",
            8,
            "c7",
            &haiku("project b private question"),
            &openai_out(PROJECT_B_SECRET),
        ),
    ];
    let mut batch = RowBatch::new("fixture");
    batch.llm_calls = calls;

    let (t, s) = (trace, span);
    let mut up = feedback("fb-up", "a", "thumbs", (&t(3), &s(3), "c2"));
    up.value_type = "boolean".into();
    up.score = Some(1.0);
    // Resent: same id, received later, with a comment; counted once (the last one wins).
    let mut up_again = up.clone();
    up_again.received_at += SEC;
    up_again.comment = "resent; reach me at bob@example.org".into();
    let mut down = feedback("fb-down", "a", "thumbs", (&t(4), &s(4), "c3"));
    down.value_type = "boolean".into();
    down.score = Some(0.0);
    let mut conv = feedback("fb-conv", "a", "helpfulness", ("", "", "c1"));
    conv.value_type = "number".into();
    conv.score = Some(4.0);
    let mut trace_level = feedback("fb-trace", "a", "correctness", (&t(5), "", "c4"));
    trace_level.value_type = "label".into();
    trace_level.label = "correct".into();
    let mut other = feedback("fb-b", "b", "thumbs", (&t(8), &s(8), "c7"));
    other.value_type = "boolean".into();
    other.score = Some(1.0);
    batch.feedback = vec![up, up_again, down, conv, trace_level, other];

    let mut regen = signal("sig-regen", "regenerate", 1, "c1");
    regen.discarded_trace_id = trace(1);
    regen.discarded_span_id = span(1);
    let mut edit = signal("sig-edit", "edit", 5, "c4");
    edit.edit_ratio = Some(0.4);
    edit.edited_text = "Summary: contact Jane by email.".into();
    let copy = signal("sig-copy", "copy", 2, "c1");
    batch.signals = vec![regen, edit, copy];
    db.insert(batch).await;
}

/// A migrated private store of `backend` with the fixture (a DuckDB file is closed again).
pub async fn fixture_database(backend: Backend) -> Db {
    let db = Db::new(backend);
    if backend == Backend::ClickHouse {
        db.pipeline.migrate();
    }
    insert_fixture(&db).await;
    db
}

/// Runs `flywheel export` against `db`; returns (stdout, stderr).
pub fn cli_export(db: &Db, args: &[&str]) -> (Vec<u8>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flywheel"))
        .arg("export")
        .args(args)
        .envs(db.env())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "flywheel export {args:?}: {stderr}");
    (out.stdout, stderr)
}

/// Reads a Parquet file with pyarrow; one JSON object per row (keys sorted).
pub fn read_parquet(path: &Path) -> String {
    let venv = std::env::var("FLYWHEEL_VENV").expect("FLYWHEEL_VENV is not set");
    let script = "import json, sys\nimport pyarrow.parquet as pq\n\
        for row in pq.read_table(sys.argv[1]).to_pylist():\n    \
        print(json.dumps(row, sort_keys=True, ensure_ascii=False))\n";
    let out = Command::new(format!("{venv}/bin/python"))
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pyarrow: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A `flywheel api` process on a free port; killed on drop.
pub struct Api {
    child: Child,
    pub addr: String,
    pub admin: String,
}

impl Api {
    pub fn start(db: &Db, extra: &[(&str, &str)]) -> Self {
        let (port, admin) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_flywheel"))
            .arg("api")
            .envs(db.env())
            .env("FLYWHEEL_API__LISTEN", format!("127.0.0.1:{port}"))
            .env("FLYWHEEL_ADMIN__LISTEN", format!("127.0.0.1:{admin}"))
            .env("FLYWHEEL_AUTH__REQUIRED", "true")
            .env(
                "FLYWHEEL_AUTH__KEYS",
                "{secret-key-a=\"a\", secret-key-b=\"b\"}",
            )
            .env("FLYWHEEL_AUTH__PUBLIC_KEYS", "{pk-browser-a=\"a\"}")
            .env("RUST_LOG", "warn,flywheel_api=info")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .spawn()
            .expect("cannot start flywheel api");
        let me = Self {
            child,
            addr: format!("127.0.0.1:{port}"),
            admin: format!("http://127.0.0.1:{admin}"),
        };
        let url = format!("http://{}/healthz", me.addr);
        wait_until(Duration::from_secs(30), "api up", || {
            http_get_status(&url) == Some(200)
        });
        me
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response read byte by byte off the wire.
#[derive(Debug, Default)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Data chunks as the server framed them (chunked transfer encoding).
    pub chunks: Vec<Vec<u8>>,
    pub trailers: Vec<(String, String)>,
    /// The terminating zero-size chunk arrived.
    pub complete: bool,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        find(&self.headers, name)
    }

    pub fn trailer(&self, name: &str) -> Option<&str> {
        find(&self.trailers, name)
    }

    pub fn body(&self) -> Vec<u8> {
        self.chunks.concat()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body()).unwrap()
    }
}

fn find<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn read_headers(r: &mut impl BufRead) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
            return out;
        }
        if let Some((k, v)) = line.split_once(':') {
            out.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
}

/// `GET path` over HTTP/1.1 with `TE: trailers`, reading chunk framing and trailers.
pub fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nTE: trailers\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut r = BufReader::new(stream);
    let mut status_line = String::new();
    r.read_line(&mut status_line).unwrap();
    let mut resp = RawResponse {
        status: status_line.split(' ').nth(1).unwrap().parse().unwrap(),
        headers: read_headers(&mut r),
        ..RawResponse::default()
    };
    if resp.header("transfer-encoding") != Some("chunked") {
        let len: usize = resp
            .header("content-length")
            .unwrap_or("0")
            .parse()
            .unwrap();
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        resp.chunks.push(body);
        resp.complete = true;
        return resp;
    }
    loop {
        let mut size_line = String::new();
        if r.read_line(&mut size_line).unwrap_or(0) == 0 {
            return resp; // connection closed before the last chunk
        }
        let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap(), 16).unwrap();
        if size == 0 {
            resp.trailers = read_headers(&mut r);
            resp.complete = true;
            return resp;
        }
        let mut chunk = vec![0; size + 2];
        if r.read_exact(&mut chunk).is_err() {
            return resp;
        }
        chunk.truncate(size);
        resp.chunks.push(chunk);
    }
}
