//! Admission over real sockets: overload and budget decided from the headers, before the
//! body is read; a refused body is never buffered, and both kinds of client (those that wait
//! for `100 Continue` and those that send the whole body first) read the 503.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::helpers::{SMALL_PAIRWISE_BODY, one_permit, take_a_permit};
use crate::live::{gauge, response_head, start, start_with_state, until_gauge};

#[tokio::test]
async fn concurrent_requests_past_the_permits_and_queue_get_503_with_retry_after() {
    let (addr, _stop, _server, state) = start_with_state(one_permit(1)).await;
    // The one permit is busy for the whole burst.
    let busy = take_a_permit(&state).await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/similarity/pairwise");
    let requests: Vec<_> = (0..12)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(SMALL_PAIRWISE_BODY)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let retry_after = response.headers().get("retry-after").cloned();
                let json: Value = response.json().await.unwrap();
                (status, retry_after, json)
            })
        })
        .collect();
    // One waits in the queue; the other eleven are refused without waiting.
    until_gauge(
        addr,
        "simserve_rejections_total{reason=\"queue_full\"}",
        |n| n >= 11.0,
    )
    .await;
    assert_eq!(gauge(addr, "simserve_queue_depth").await, 1.0);
    drop(busy);
    let mut answered = Vec::new();
    for request in requests {
        answered.push(request.await.unwrap());
    }
    let refused: Vec<_> = answered
        .iter()
        .filter(|(status, ..)| *status == 503)
        .collect();
    let served = answered
        .iter()
        .filter(|(status, ..)| *status == 200)
        .count();
    assert_eq!((refused.len(), served), (11, 1), "{answered:?}");
    for (_, retry_after, json) in &refused {
        assert_eq!(retry_after.as_ref().unwrap(), "1");
        assert_eq!(json["type"], "urn:simserve:problem:overloaded");
    }
}

#[tokio::test]
async fn bodies_declared_beyond_the_budget_are_refused_from_their_headers_and_others_are_served() {
    let (addr, _stop, _server) = start(|c| c.memory_budget_bytes = 8 << 20).await;
    let mut refused = Vec::new();
    for _ in 0..32 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = "POST /similarity/pairwise HTTP/1.1\r\nHost: simserve\r\nContent-Type: application/json\r\nContent-Length: 60000000\r\n\r\n{";
        stream.write_all(head.as_bytes()).await.unwrap();
        refused.push(stream);
    }
    for stream in refused {
        let head = response_head(stream).await;
        assert!(head.starts_with("HTTP/1.1 422"), "{head}");
        assert!(
            head.contains("more than the server's whole memory budget"),
            "{head}"
        );
    }
    assert_eq!(gauge(addr, "simserve_memory_reserved_bytes").await, 0.0);
    let served = reqwest::Client::new()
        .post(format!("http://{addr}/similarity/pairwise"))
        .header("content-type", "application/json")
        .body(SMALL_PAIRWISE_BODY)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
}

/// A server with one compute permit, held by the returned guard, and no queue: every
/// similarity request is refused from its headers.
async fn saturated() -> (
    SocketAddr,
    oneshot::Sender<()>,
    simserve::admission::Admitted,
) {
    let (addr, stop, _server, state) = start_with_state(one_permit(0)).await;
    (addr, stop, take_a_permit(&state).await)
}

/// Sends `head` and then a body of `len` spaces whole, as `http.client` and `requests` do
/// (the whole body, and only then the answer), and reads the answer to the connection's
/// close; panics if the connection is reset while the body is sent.
async fn send_whole_then_read(addr: SocketAddr, head: &str, len: usize) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let body = vec![b' '; len];
    tokio::time::timeout(Duration::from_secs(30), stream.write_all(&body))
        .await
        .expect("the server keeps taking the body")
        .unwrap_or_else(|err| panic!("reset while sending the body: {err}\n{head}"));
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("the answer arrives and the connection closes")
        .expect("the connection closes cleanly");
    answer
}

/// The head of a 32 MiB pairwise request, with `extra` header lines.
fn large_head(extra: &str) -> String {
    format!(
        "POST /similarity/pairwise HTTP/1.1\r\nHost: simserve\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n",
        32 << 20
    )
}

#[tokio::test]
async fn a_client_expecting_100_continue_is_refused_before_it_sends_the_body() {
    let (addr, _stop, _busy) = saturated().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = large_head("Expect: 100-continue\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server closes the connection after its answer, without waiting for a body that
    // will never come.
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(2), stream.read_to_string(&mut answer))
        .await
        .expect("the server closes the connection at once")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(!answer.contains("100 Continue"), "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(lower.contains("retry-after: 1\r\n"), "{answer}");
    assert!(lower.contains("connection: close\r\n"), "{answer}");
    assert!(answer.contains("every compute slot is busy"), "{answer}");
    let received = gauge(
        addr,
        "simserve_http_request_body_bytes_total{route=\"/similarity/pairwise\"}",
    )
    .await;
    assert_eq!(received, 0.0);
}

#[tokio::test]
async fn a_client_that_sends_its_whole_body_reads_the_503_instead_of_a_reset() {
    let (addr, _stop, _busy) = saturated().await;
    let answer = send_whole_then_read(addr, &large_head(""), 32 << 20).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("every compute slot is busy"), "{answer}");
    assert_eq!(gauge(addr, "simserve_memory_reserved_bytes").await, 0.0);
    // Dropped as it arrived, never read into a request's buffer.
    let received = gauge(
        addr,
        "simserve_http_request_body_bytes_total{route=\"/similarity/pairwise\"}",
    )
    .await;
    assert_eq!(received, 0.0);
}

#[tokio::test]
async fn a_broken_chunk_is_a_400_that_says_what_is_wrong_with_it() {
    let (addr, _stop, _server) = start(|_| {}).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = "POST /similarity/matrix HTTP/1.1\r\nHost: simserve\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("the answer arrives and the connection closes")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("Invalid chunk size line"), "{answer}");
}

#[tokio::test]
async fn a_client_that_sends_a_body_far_over_the_limit_whole_reads_its_413() {
    let (addr, _stop, _server) = start(|c| c.max_body_bytes = 1 << 20).await;
    // Past the 64 MiB every refused body is read to, and 80 times the limit.
    let len = simserve::body::MIN_LINGER_BYTES + (16 << 20);
    let head = format!(
        "POST /similarity/matrix HTTP/1.1\r\nHost: simserve\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    );
    let answer = send_whole_then_read(addr, &head, len).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("larger than the limit of 1048576 bytes"),
        "{answer}"
    );
}

/// How many of `len` body bytes the server at `addr` takes after `head` before it closes the
/// connection, sent a MiB at a time.
async fn bytes_taken(addr: SocketAddr, head: &str, len: usize) -> usize {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 1 << 20];
    let mut sent = 0;
    let sending = async {
        while sent < len && stream.write_all(&chunk).await.is_ok() {
            sent += chunk.len();
        }
    };
    tokio::time::timeout(Duration::from_secs(30), sending)
        .await
        .expect("the server takes the body or closes the connection");
    sent
}

/// Declared a quarter GiB past the 64 MiB every refused body is read to at most.
const REFUSED_LENGTH: usize = simserve::body::MIN_LINGER_BYTES + (256 << 20);

/// Asserts that the server at `addr` takes no more of a REFUSED_LENGTH body sent after
/// `head` than the 64 MiB it discards and what the sockets' buffers hold (a few MiB).
async fn assert_cut_at_the_discard_limit(addr: SocketAddr, head: &str, what: &str) {
    let sent = bytes_taken(addr, head, REFUSED_LENGTH).await;
    assert!(
        sent < simserve::body::MIN_LINGER_BYTES + (64 << 20),
        "{what}: {sent} of {REFUSED_LENGTH} bytes taken"
    );
}

#[tokio::test]
async fn a_body_without_a_key_or_to_options_is_discarded_only_to_the_limit_whatever_it_declares() {
    let (addr, _stop, _server) = start(|c| {
        c.api_keys = vec!["k1".into()];
        c.cors_origins = vec!["*".into()];
        c.max_body_bytes = 1 << 20;
    })
    .await;
    // One refused for its size is read to its end (the 413 test above); these are cut at
    // 64 MiB: a route without a key (401), an open path without one (405), and any OPTIONS
    // (a preflight, answered before authentication).
    for (method, path) in [
        ("POST", "/similarity/matrix"),
        ("POST", "/healthz"),
        ("OPTIONS", "/similarity/matrix"),
    ] {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: simserve\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: POST\r\nContent-Type: application/json\r\nContent-Length: {REFUSED_LENGTH}\r\n\r\n"
        );
        assert_cut_at_the_discard_limit(addr, &head, &format!("{method} {path}")).await;
    }
}

#[tokio::test]
async fn cross_origin_bodies_and_those_with_two_hosts_are_discarded_only_to_the_limit() {
    let (addr, _stop, _server) = start(|c| c.max_body_bytes = 1 << 20).await;
    for (what, headers) in [
        (
            "cross-origin POST",
            "Host: simserve\r\nOrigin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\nContent-Type: text/plain\r\n",
        ),
        (
            "two Host headers",
            "Host: a.example\r\nHost: b.example\r\nContent-Type: application/json\r\n",
        ),
    ] {
        let head = format!(
            "POST /similarity/matrix HTTP/1.1\r\n{headers}Content-Length: {REFUSED_LENGTH}\r\n\r\n"
        );
        assert_cut_at_the_discard_limit(addr, &head, what).await;
    }
}

#[tokio::test]
async fn a_client_that_sends_its_whole_body_reads_any_answer_given_before_it_was_read() {
    let (addr, _stop, _server) = start(|c| {
        c.api_keys = vec!["k1".into()];
        c.max_body_bytes = 1 << 20;
    })
    .await;
    let key = "Authorization: Bearer k1\r\n";
    let cases = [
        (
            "/similarity/pairwise",
            "application/json",
            "",
            "HTTP/1.1 401",
        ),
        (
            "/similarity/pairwise",
            "application/json",
            key,
            "HTTP/1.1 413",
        ),
        ("/similarity/pairwise", "text/plain", key, "HTTP/1.1 415"),
        ("/no-such-route", "application/json", key, "HTTP/1.1 404"),
        ("/v2/models/matrix/infer", "text/plain", key, "HTTP/1.1 415"),
        (
            "/similarity/pairwise",
            "text/plain",
            "Origin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\n",
            "HTTP/1.1 403",
        ),
    ];
    for (path, content_type, auth, status) in cases {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: simserve\r\nContent-Type: {content_type}\r\n{auth}Content-Length: {}\r\n\r\n",
            32 << 20
        );
        let answer = send_whole_then_read(addr, &head, 32 << 20).await;
        assert!(answer.starts_with(status), "{path}: {answer}");
    }
}

#[tokio::test]
async fn connections_past_the_limit_wait_until_one_closes() {
    let (addr, _stop, _server) = start(|c| c.max_connections = 1).await;
    let get = b"GET /healthz HTTP/1.1\r\nHost: simserve\r\n\r\n";
    let mut first = TcpStream::connect(addr).await.unwrap();
    first.write_all(get).await.unwrap();
    let mut buffer = [0u8; 1024];
    let n = first.read(&mut buffer).await.unwrap();
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
    // Kept alive, the first connection holds the only slot: the second is not served.
    let mut second = TcpStream::connect(addr).await.unwrap();
    second.write_all(get).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buffer)).await;
    assert!(waited.is_err(), "served past the limit");
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buffer))
        .await
        .expect("served once the first connection closed")
        .unwrap();
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn a_request_head_of_200_kib_is_refused_with_431() {
    let (addr, _stop, _server) = start(|_| {}).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let pad = "a".repeat(200 << 10);
    let head = format!("GET /healthz HTTP/1.1\r\nHost: simserve\r\nX-Pad: {pad}\r\n\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
}

#[tokio::test]
async fn a_large_body_buffer_is_kept_for_the_next_large_body_and_freed_when_unused() {
    const KEPT: &str = "simserve_kept_body_buffers_bytes";
    let (addr, _stop, _server) = start(|_| {}).await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/similarity/matrix");
    // Two bodies of more than 1 MiB, the second shorter and with other values, so that
    // anything left of the first in the kept buffer would show in the second's answer.
    let body = |rows: usize, shift: usize| {
        let row = |i: usize| {
            (0..300)
                .map(|j| ((i * 300 + j + shift) * 37 % 1000) as f32 / 1000.0 - 0.5)
                .collect::<Vec<f32>>()
        };
        let a: Vec<Vec<f32>> = (0..rows).map(row).collect();
        serde_json::json!({"a": a, "b": [row(rows), row(rows + 1)]}).to_string()
    };
    let (first, second) = (body(600, 0), body(590, 11));
    assert!(second.len() > 1 << 20 && second.len() < first.len());
    let mut kept_after = Vec::new();
    for body in [&first, &second] {
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let got: Value = response.json().await.unwrap();
        let reference = crate::helpers::app_with(|c| c.kept_body_bytes = 0)
            .post("/similarity/matrix", &serde_json::from_str(body).unwrap())
            .await;
        assert_eq!(&got, reference.ok());
        kept_after.push(gauge(addr, KEPT).await);
    }
    // The first body's buffer was kept, and the second reused it rather than adding its own.
    assert_eq!(kept_after, [first.len() as f64; 2]);
    // Unused for a while, it is freed.
    until_gauge(addr, KEPT, |bytes| bytes == 0.0).await;
}
