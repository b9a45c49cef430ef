//! Serving over real sockets: keep-alive across a bad request, slow and idle connections
//! closed, overload refused with Retry-After, and the drain on shutdown.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use simserve::state::AppState;
use simserve::{Application, Config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::helpers::{SMALL_PAIRWISE_BODY, metric_value, spawn_binary};

/// Starts an app with `change` applied; returns its address, a stop switch and its task.
async fn start(
    change: impl FnOnce(&mut Config),
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let (addr, stop, server, _) = start_with_state(change).await;
    (addr, stop, server)
}

/// [`start`], also returning the server's shared state.
async fn start_with_state(
    change: impl FnOnce(&mut Config),
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
    AppState,
) {
    let mut config = Config::with_addr("127.0.0.1:0".parse().unwrap());
    change(&mut config);
    let app = Application::build(&config).await.unwrap();
    let addr = app.local_addr().unwrap();
    let state = app.state().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    (addr, stop, server, state)
}

/// The value of the sample `name` on the server's `/metrics` (see [`metric_value`]).
async fn gauge(addr: SocketAddr, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    metric_value(&text, name)
}

/// Waits until `name` on `/metrics` satisfies `ok`, for at most 20 s.
async fn until_gauge(addr: SocketAddr, name: &str, ok: impl Fn(f64) -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while !ok(gauge(addr, name).await) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "{name} stayed at {}",
        gauge(addr, name).await
    );
}

/// Sends the head and the first half of a pairwise request, leaving it in flight.
async fn half_sent_request(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let (first, _) = SMALL_PAIRWISE_BODY.split_at(SMALL_PAIRWISE_BODY.len() / 2);
    let head = format!(
        "POST /similarity/pairwise HTTP/1.1\r\nHost: simserve\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{first}",
        SMALL_PAIRWISE_BODY.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Sends the rest of the body and reads the whole response (the server closes after it).
async fn finish_request(mut stream: TcpStream) -> String {
    let (_, rest) = SMALL_PAIRWISE_BODY.split_at(SMALL_PAIRWISE_BODY.len() / 2);
    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("the response arrives and the connection closes")
    .unwrap();
    response
}

#[tokio::test]
async fn the_service_binds_a_free_port_and_keeps_serving_after_a_bad_request() {
    let (addr, _stop, _server) = start(|_| {}).await;
    assert_ne!(addr.port(), 0);

    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let bad = client
        .post(format!("{base}/similarity/pairwise"))
        .header("content-type", "application/json")
        .body("{\"a\": [[1, 2], [3]], \"b\": [[1, 2]]}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    assert_eq!(bad.headers()["content-type"], "application/problem+json");

    let good = client
        .post(format!("{base}/similarity/pairwise"))
        .json(&json!({"a": [[1, 0]], "b": [[0, 1]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    let body: Value = good.json().await.unwrap();
    assert_eq!(body["scores"], json!([0.0]));
}

#[tokio::test]
async fn connections_that_send_headers_slowly_or_idle_are_closed() {
    let timeout = Duration::from_millis(300);
    let (addr, _stop, _server) = start(|c| c.header_timeout = timeout).await;
    let opened = std::time::Instant::now();
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"POST /similarity/pairwise HTTP/1.1\r\nHost: simserve\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    // A connection that finished one request and then stays idle.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: simserve\r\n\r\n")
        .await
        .unwrap();
    slow.push(idle);

    for (i, mut stream) in slow.into_iter().enumerate() {
        let mut sink = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut sink))
            .await
            .unwrap_or_else(|_| panic!("connection {i} is still open"));
        // Closed: either a clean end of stream or a reset.
        if i == 200 {
            assert!(String::from_utf8_lossy(&sink).starts_with("HTTP/1.1 200"));
        }
        drop(read);
    }
    // None closed before its time; all within a few seconds of it.
    let took = opened.elapsed();
    assert!(took >= timeout && took < Duration::from_secs(5), "{took:?}");
    let health = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn concurrent_requests_past_the_permits_and_queue_get_503_with_retry_after() {
    let (addr, _stop, _server, state) = start_with_state(|c| {
        c.compute_permits = 1;
        c.max_queue = 1;
    })
    .await;
    // The one permit is busy for the whole burst.
    let busy = state
        .admission
        .enter(None)
        .unwrap()
        .admit(None)
        .await
        .unwrap();
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
async fn a_client_that_stops_reading_is_cut_off_and_its_memory_released() {
    let (addr, _stop, _server) = start(|c| c.write_timeout = Duration::from_millis(500)).await;
    // 2,000 rows against themselves: about 40 MB of JSON, far more than socket buffers hold.
    let rows: Vec<[f32; 2]> = (0..2000).map(|i| [1.0, i as f32]).collect();
    let body = json!({"a": rows}).to_string();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /similarity/matrix HTTP/1.1\r\nHost: simserve\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    // The answer holds its memory while it waits for the client ...
    until_gauge(addr, "simserve_memory_reserved_bytes", |b| b > 40e6).await;
    // ... until the write timeout closes the connection.
    until_gauge(addr, "simserve_memory_reserved_bytes", |b| b == 0.0).await;
    let mut sink = vec![0u8; 1 << 20];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection is still open");
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

/// Reads what the server sends on `stream` within 10 s, without sending more.
async fn response_head(mut stream: TcpStream) -> String {
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = async {
        while let Ok(n) = stream.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buffer[..n]);
            if response.ends_with(b"}") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer arrives");
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn on_shutdown_readiness_fails_at_once_and_requests_in_flight_finish() {
    let (addr, stop, server) = start(|c| c.shutdown_delay = Duration::from_millis(500)).await;
    let in_flight = half_sent_request(addr).await;
    until_gauge(addr, "simserve_http_requests_in_flight", |n| n >= 2.0).await;
    stop.send(()).unwrap();

    // During the delay the listener still accepts, and readiness says no.
    let ready = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let response = finish_request(in_flight).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("\"scores\":[0.0]}"), "{response}");

    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops once drained")
        .unwrap()
        .unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn the_drain_stops_waiting_at_the_shutdown_timeout() {
    let (addr, stop, server) = start(|c| c.shutdown_timeout = Duration::from_millis(200)).await;
    let _stuck = half_sent_request(addr).await;
    until_gauge(addr, "simserve_http_requests_in_flight", |n| n >= 2.0).await;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server gives up on the stuck request")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_binary_drains_on_sigterm_and_exits_zero() {
    let (mut server, addr, lines) = spawn_binary(&[]);
    // Keep reading the log so the child never blocks on a full pipe.
    let log = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());

    let in_flight = half_sent_request(addr).await;
    // Its head has been read: it counts as in flight (with the metrics request itself).
    until_gauge(addr, "simserve_http_requests_in_flight", |n| n >= 2.0).await;
    let killed = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = finish_request(in_flight).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    let status = tokio::task::spawn_blocking(move || server.0.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    let log = log.join().unwrap();
    assert!(
        log.iter().any(|l| l.contains("drained; exiting")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("\"route\":\"/similarity/pairwise\"")
                && l.contains("\"status\":200")),
        "{log:?}"
    );
}

#[tokio::test]
async fn the_healthcheck_subcommand_exits_zero_only_while_the_server_answers() {
    let (addr, stop, server) = start(|_| {}).await;
    let check = move || {
        Command::new(env!("CARGO_BIN_EXE_simserve"))
            .args(["--addr", &addr.to_string(), "healthcheck"])
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    let up = tokio::task::spawn_blocking(check).await.unwrap();
    assert!(up.success(), "{up}");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let down = tokio::task::spawn_blocking(check).await.unwrap();
    assert_eq!(down.code(), Some(1));
}

/// A server with one compute permit, held by the returned guard, and no queue: every
/// similarity request is refused from its headers.
async fn saturated() -> (
    SocketAddr,
    oneshot::Sender<()>,
    simserve::admission::Admitted,
) {
    let (addr, stop, _server, state) = start_with_state(|c| {
        c.compute_permits = 1;
        c.max_queue = 0;
    })
    .await;
    let busy = state
        .admission
        .enter(None)
        .unwrap()
        .admit(None)
        .await
        .unwrap();
    (addr, stop, busy)
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
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(large_head("").as_bytes()).await.unwrap();
    // As `http.client` and `requests` do: the whole body, and only then the answer.
    let body = vec![b' '; 32 << 20];
    tokio::time::timeout(Duration::from_secs(20), stream.write_all(&body))
        .await
        .expect("the server keeps taking the body")
        .expect("the connection is not reset while the body is sent");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("the answer arrives and the connection closes")
        .expect("the connection closes cleanly");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("every compute slot is busy"), "{answer}");
    assert_eq!(gauge(addr, "simserve_memory_reserved_bytes").await, 0.0);
}
