//! The HTTP exporter against a scripted server on localhost: 429 and 503 are retried after
//! `Retry-After`, and a request refused until the last attempt is counted as refused, never
//! dropped silently.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flywheel_loadgen::config::SinkConfig;
use flywheel_loadgen::sink::http::HttpExporter;
use flywheel_loadgen::sink::{Exporter, Kind, Request};

/// The path and body of every request received.
type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Serves one scripted status line (and headers) per request, the last one forever; returns
/// the base URL and the paths and bodies received.
fn server(script: Vec<&'static str>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for (n, stream) in listener.incoming().enumerate() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let path = request_line.split_whitespace().nth(1).unwrap().to_string();
            log.lock().unwrap().push((path, body));
            let answer = script[n.min(script.len() - 1)];
            write!(
                stream,
                "{answer}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
        }
    });
    (url, seen)
}

fn exporter(url: &str, max_attempts: u32) -> HttpExporter {
    HttpExporter::new(&SinkConfig {
        endpoint: url.to_string(),
        api_key: Some("k-1".into()),
        max_attempts,
        ..SinkConfig::default()
    })
    .unwrap()
}

fn request() -> Request {
    Request {
        kind: Kind::Feedback,
        body: br#"[{"name":"thumbs","value":true,"conversation_id":"c"}]"#.to_vec(),
        items: 1,
    }
}

#[tokio::test]
async fn retries_429_and_503_after_retry_after_then_delivers() {
    let (url, seen) = server(vec![
        "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1",
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1",
        "HTTP/1.1 200 OK",
    ]);
    let started = Instant::now();
    let d = exporter(&url, 5).export(request()).await;
    assert_eq!((d.accepted, d.refused, d.retries), (1, 0, 2), "{d:?}");
    // Two waits of Retry-After: 1 s each.
    assert!(started.elapsed() >= Duration::from_secs(2));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    assert!(seen
        .iter()
        .all(|(path, body)| path == "/v1/feedback" && *body == request().body));
}

#[tokio::test]
async fn a_request_refused_on_every_attempt_is_counted_refused() {
    let (url, seen) = server(vec!["HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0"]);
    let d = exporter(&url, 3).export(request()).await;
    assert_eq!((d.accepted, d.refused, d.retries), (0, 1, 2), "{d:?}");
    let why = d.error.unwrap();
    assert!(
        why.contains("gave up after 3 attempts") && why.contains("503"),
        "{why}"
    );
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn an_unauthorized_request_is_refused_without_retry() {
    let (url, seen) = server(vec!["HTTP/1.1 401 Unauthorized"]);
    let d = exporter(&url, 5).export(request()).await;
    assert_eq!((d.accepted, d.refused, d.retries), (0, 1, 0), "{d:?}");
    assert_eq!(seen.lock().unwrap().len(), 1);
}
