//! The executors other than `shell`, through [`super::execute`].

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Outcome;
use super::test_support::{job, run, run_simple};

#[tokio::test]
async fn noop_succeeds_and_unknown_kinds_fail() {
    assert_eq!(
        run_simple(job("noop", json!({}))).await.outcome,
        Outcome::success()
    );
    let unknown = run_simple(job("teleport", json!({}))).await.outcome;
    assert_eq!(
        unknown,
        Outcome::failure("unknown executor kind \"teleport\"")
    );
}

#[tokio::test]
async fn sleep_waits_then_succeeds_and_rejects_bad_payloads() {
    let started = Instant::now();
    let ran = run_simple(job("sleep", json!({"seconds": 0.3}))).await;
    assert_eq!(ran.outcome, Outcome::success());
    assert!(started.elapsed() >= Duration::from_millis(300));
    for bad in [json!({"seconds": -1}), json!({}), json!({"seconds": "x"})] {
        let outcome = run_simple(job("sleep", bad.clone())).await.outcome;
        assert!(!outcome.succeeded, "{bad}");
        assert!(
            outcome.error.contains("invalid sleep payload"),
            "{}",
            outcome.error
        );
    }
}

#[tokio::test]
async fn sleep_stops_when_cancelled_or_timed_out() {
    let cancel = CancellationToken::new();
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        canceller.cancel();
    });
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let ran = run(
        job("sleep", json!({"seconds": 300})),
        &[],
        dir.path(),
        cancel,
    )
    .await;
    assert_eq!(ran.outcome, Outcome::cancelled());
    assert!(started.elapsed() < Duration::from_secs(5));

    let mut timed = job("sleep", json!({"seconds": 300}));
    timed.timeout_seconds = 1;
    let ran = run_simple(timed).await;
    assert_eq!(ran.outcome, Outcome::failure("timed out after 1 s"));
}

/// Answers one HTTP request with `201` and `hello`; returns the request it got.
async fn one_response(listener: TcpListener) -> String {
    let (mut socket, _) = listener.accept().await.unwrap();
    let mut request = Vec::new();
    let mut buf = [0; 4096];
    loop {
        let n = socket.read(&mut buf).await.unwrap();
        request.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&request).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text
                .lines()
                .find_map(|l| {
                    l.to_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .map_or(0, |v| v.trim().parse::<usize>().unwrap());
            if request.len() >= end + 4 + length || n == 0 {
                break;
            }
        }
    }
    let reply = "HTTP/1.1 201 Created\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";
    socket.write_all(reply.as_bytes()).await.unwrap();
    String::from_utf8_lossy(&request).into_owned()
}

#[tokio::test]
async fn https_urls_are_spoken_to_over_tls() {
    use tokio::io::AsyncReadExt as _;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/",
        listener.local_addr().unwrap().port()
    );
    let first_byte = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut byte = [0u8; 1];
        socket.read_exact(&mut byte).await.unwrap();
        byte[0]
    });
    let ran = run_simple(job("http", json!({"url": url}))).await;
    // A TLS handshake record starts with 0x16; this listener never answers it.
    assert_eq!(first_byte.await.unwrap(), 0x16);
    assert!(!ran.outcome.succeeded, "{:?}", ran.outcome);
}

#[tokio::test]
async fn http_sends_the_request_and_checks_the_status() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = tokio::spawn(one_response(listener));
    let payload = json!({"url": url, "method": "post", "body": {"a": 1}, "expect_status": 201});
    let ran = run_simple(job("http", payload)).await;
    assert_eq!(ran.outcome, Outcome::success());
    assert_eq!(ran.output(), format!("POST {url} -> 201 Created\nhello"));
    let request = server.await.unwrap();
    assert!(request.starts_with("POST /hook HTTP/1.1"), "{request}");
    assert!(request.ends_with(r#"{"a":1}"#), "{request}");

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(one_response(listener));
    let ran = run_simple(job("http", json!({"url": url, "expect_status": 200}))).await;
    assert_eq!(
        ran.outcome,
        Outcome::failure(format!("GET {url} returned 201 Created, expected 200"))
    );
    let missing_url = run_simple(job("http", json!({}))).await.outcome;
    assert!(
        missing_url.error.contains("missing field `url`"),
        "{}",
        missing_url.error
    );
}
