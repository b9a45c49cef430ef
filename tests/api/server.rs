//! Serving over real sockets: keep-alive across a bad request, slow and idle connections
//! closed, clients that stop reading cut off, the drain on shutdown, and the admin address's
//! probes (overload is `admission.rs`'s).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{SMALL_PAIRWISE_BODY, spawn_binary};
use crate::live::{gauge, metrics_text, start, start_with_admin, start_with_state, until_gauge};

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
async fn a_stopped_server_s_background_tasks_end_and_let_its_state_go() {
    let (_addr, stop, server, state) = start_with_state(|_| {}).await;
    let kept_bodies = std::sync::Arc::downgrade(&state.kept_bodies);
    drop(state);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    // Aborted tasks are dropped when the runtime next comes to them.
    let released = tokio::time::timeout(Duration::from_secs(5), async {
        while kept_bodies.strong_count() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(released.is_ok(), "a background task still holds the state");
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

/// Sends `GET path` on a new connection to `addr` and returns the status, or `None` if no
/// answer comes within 300 ms.
async fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let response = client.get(format!("http://{addr}{path}")).send().await;
    response.ok().map(|r| r.status().as_u16())
}

#[tokio::test]
async fn the_admin_address_answers_probes_while_max_connections_clients_hold_the_main_one() {
    let (server, _stop, _task) = start_with_admin(|c| c.max_connections = 1).await;
    let admin = server.admin.unwrap();
    // One kept-alive connection holds the main address's only slot.
    let mut holder = TcpStream::connect(server.addr).await.unwrap();
    holder
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: simserve\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = [0u8; 1024];
    let n = holder.read(&mut buffer).await.unwrap();
    assert!(buffer[..n].starts_with(b"HTTP/1.1 200"));
    assert_eq!(
        get_status(server.addr, "/healthz").await,
        None,
        "served past the limit"
    );

    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v2/health/live",
        "/v2/health/ready",
    ] {
        assert_eq!(get_status(admin, path).await, Some(200), "{path}");
    }
    // More probes at once than the main address's limit, each on its own connection.
    let probes: Vec<_> = (0..8)
        .map(|_| tokio::spawn(get_status(admin, "/readyz")))
        .collect();
    for probe in probes {
        assert_eq!(probe.await.unwrap(), Some(200));
    }
    assert_eq!(gauge(admin, "simserve_http_requests_in_flight").await, 1.0);
    // The main address's one connection, and the admin address's own, this one.
    let main = "simserve_connections{listener=\"main\"}";
    assert_eq!(gauge(admin, main).await, 1.0);
    assert_eq!(
        gauge(admin, "simserve_connections{listener=\"admin\"}").await,
        1.0
    );
    drop(holder);
    until_gauge(admin, main, |n| n == 0.0).await;
}

#[tokio::test]
async fn the_admin_address_serves_only_probes_and_says_not_ready_through_the_drain() {
    let (server, stop, task) =
        start_with_admin(|c| c.shutdown_delay = Duration::from_millis(500)).await;
    let admin = server.admin.unwrap();
    let client = reqwest::Client::new();
    for (method, path) in [
        ("POST", "/similarity/pairwise"),
        ("GET", "/"),
        ("GET", "/openapi.yaml"),
        ("GET", "/tables"),
        ("POST", "/tables/reload"),
    ] {
        let response = client
            .request(method.parse().unwrap(), format!("http://{admin}{path}"))
            .header("content-type", "application/json")
            .body(SMALL_PAIRWISE_BODY)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404, "{method} {path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
    }
    // The main address still serves everything, the probes included.
    assert_eq!(get_status(server.addr, "/readyz").await, Some(200));

    let in_flight = half_sent_request(server.addr).await;
    until_gauge(admin, "simserve_http_requests_in_flight", |n| n >= 2.0).await;
    stop.send(()).unwrap();
    assert_eq!(get_status(admin, "/readyz").await, Some(503));
    assert_eq!(get_status(admin, "/v2/health/ready").await, Some(503));
    assert_eq!(get_status(admin, "/healthz").await, Some(200));
    let response = finish_request(in_flight).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the server stops once drained")
        .unwrap()
        .unwrap();
    // The admin listener closes with the server, and lets its state go.
    let state = std::sync::Arc::downgrade(&server.state.kept_bodies);
    drop(server.state);
    crate::helpers::wait_until(Duration::from_secs(5), "the admin listener closes", || {
        std::net::TcpStream::connect(admin).is_err() && state.strong_count() == 0
    })
    .await;
}

#[tokio::test]
async fn with_api_keys_the_admin_address_still_serves_only_its_open_probes() {
    let (server, _stop, _task) = start_with_admin(|c| c.api_keys = vec!["secret".to_owned()]).await;
    let admin = server.admin.unwrap();
    let client = reqwest::Client::new();
    for token in [None, Some("secret"), Some("wrong")] {
        for (path, status) in [("/readyz", 200), ("/metrics", 200), ("/tables", 404)] {
            let mut request = client.get(format!("http://{admin}{path}"));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), status, "{path} with {token:?}");
        }
    }
    // On the main address the same token is still asked for.
    let tables = client.get(format!("http://{}/tables", server.addr)).send();
    assert_eq!(tables.await.unwrap().status(), 401);
}

#[tokio::test]
async fn idle_or_slow_clients_cannot_keep_the_admin_address_from_answering() {
    let (server, _stop, _task) = start_with_admin(|_| {}).await;
    let admin = server.admin.unwrap();
    // More idle connections than the admin address serves at once, sending nothing ...
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(admin).await.unwrap());
    }
    // ... and one announcing a large body it sends slowly.
    let mut slow = TcpStream::connect(admin).await.unwrap();
    slow.write_all(
        b"POST /healthz HTTP/1.1\r\nHost: simserve\r\nContent-Length: 100000000\r\n\r\n0123456789",
    )
    .await
    .unwrap();
    // The probe waits behind them for about a second (ADMIN_TIMEOUT), not for
    // --header-timeout (10 s); the slow body is cut off after ADMIN_CONNECTION_LIFETIME,
    // not --body-timeout (15 s).
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("http://{admin}/healthz"))
        .send()
        .await
        .expect("the probe is answered");
    assert_eq!(probe.status(), 200);
    // The slow body's request is refused, and its connection closed before the body is in.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer))
        .await
        .expect("the connection is closed")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    drop(idle);
}

#[tokio::test]
async fn the_healthcheck_subcommand_probes_the_admin_address_when_given_one() {
    let (server, stop, task) = start_with_admin(|_| {}).await;
    let admin = server.admin.unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = free.local_addr().unwrap();
    drop(free);
    let check = move |addr: SocketAddr| {
        Command::new(env!("CARGO_BIN_EXE_simserve"))
            .args(["healthcheck", "--addr", &addr.to_string()])
            .args(["--admin-addr", &admin.to_string()])
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    // Only the admin address is asked: the main one may be anything.
    let up = tokio::task::spawn_blocking(move || check(nobody))
        .await
        .unwrap();
    assert!(up.success(), "{up}");
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();
    let addr = server.addr;
    crate::helpers::wait_until(Duration::from_secs(5), "the admin listener closes", || {
        std::net::TcpStream::connect(admin).is_err()
    })
    .await;
    let down = tokio::task::spawn_blocking(move || check(addr))
        .await
        .unwrap();
    assert_eq!(down.code(), Some(1));
}

#[test]
fn a_blas_library_path_that_does_not_open_stops_start_up_with_the_reason() {
    let missing = std::env::temp_dir().join("simserve-no-such-dir/libopenblas.so.0");
    let output = Command::new(env!("CARGO_BIN_EXE_simserve"))
        .args(["--addr", "127.0.0.1:0", "--log-format", "json", "--blas"])
        .arg(&missing)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let log = String::from_utf8_lossy(&output.stderr);
    let failure = log
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["level"] == "ERROR")
        .unwrap_or_else(|| panic!("an error is logged: {log}"));
    assert_eq!(
        failure["fields"]["message"],
        "cannot use the BLAS library SIMSERVE_BLAS names"
    );
    let reason = failure["fields"]["err"].as_str().unwrap_or_default();
    assert!(
        reason.contains("simserve-no-such-dir"),
        "the reason names the path: {failure}"
    );
    assert!(
        !log.contains("simserve listening"),
        "nothing is served: {log}"
    );
}

#[tokio::test]
async fn each_request_is_logged_with_the_address_it_came_from() {
    let (_server, addr, mut lines) = spawn_binary(&[]);
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let client = stream.local_addr().unwrap().to_string();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: simserve\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let finding = tokio::task::spawn_blocking(move || {
        lines.find_map(|line| {
            let log: Value = serde_json::from_str(&line.ok()?).ok()?;
            (log["fields"]["message"] == "request").then_some(log)
        })
    });
    let logged = tokio::time::timeout(Duration::from_secs(10), finding)
        .await
        .expect("a request line within 10 s")
        .unwrap()
        .expect("the request is logged");
    // The request's fields, once: in `spans`, not repeated in `span`.
    assert!(logged.get("span").is_none(), "{logged}");
    assert_eq!(
        logged["spans"].as_array().map(Vec::len),
        Some(1),
        "{logged}"
    );
    assert_eq!(logged["spans"][0]["route"], "/healthz", "{logged}");
    assert_eq!(logged["spans"][0]["peer"], client.as_str(), "{logged}");
}

#[tokio::test]
async fn a_log_nobody_reads_never_stalls_requests_and_its_dropped_lines_are_counted() {
    // Its stderr is a pipe this test stops reading after start-up. Were the log written from
    // the request's thread, the server would block once the pipe filled (64 KiB, a few
    // hundred request lines); here lines past the log's queue are dropped instead.
    let (_server, addr, _unread) = spawn_binary(&[]);
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v2");
    for sent in 0..simserve::telemetry::QUEUED_LINES + 1000 {
        let got = tokio::time::timeout(Duration::from_secs(10), client.get(&url).send())
            .await
            .unwrap_or_else(|_| panic!("request {sent} stalled"))
            .unwrap();
        assert_eq!(got.status(), 200);
    }
    assert!(gauge(addr, "simserve_log_lines_dropped_total").await > 0.0);
}

#[tokio::test]
async fn under_a_low_open_files_limit_the_admin_address_still_answers_however_many_clients_come() {
    use std::io::BufRead;
    // Soft and hard limits of 320 open files: the default 1024 connections would use them
    // all, and every accept would fail, the admin address's too.
    let command = format!(
        "ulimit -n 320 && exec {} --addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --log-format json",
        env!("CARGO_BIN_EXE_simserve")
    );
    let mut child = Command::new("sh")
        .args(["-c", &command])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let server = crate::helpers::Process(child);
    let (mut addr, mut admin, mut capped) = (None, None, None);
    while addr.is_none() || admin.is_none() {
        let line = lines
            .next()
            .expect("the server logs its addresses")
            .unwrap();
        let log: Value = serde_json::from_str(&line).unwrap_or_default();
        let fields = &log["fields"];
        let parsed = || fields["addr"].as_str().unwrap().parse::<SocketAddr>().ok();
        match fields["message"].as_str().unwrap_or_default() {
            "simserve listening" => addr = parsed(),
            "probes and metrics also served on the admin address" => admin = parsed(),
            message if message.starts_with("the open-files limit leaves room") => {
                capped = fields["allowed"].as_u64();
            }
            _ => {}
        }
    }
    let log = std::thread::spawn(move || lines.map_while(Result::ok).count());
    // 320 less the files kept for the admin address and the rest (256), or half of it when
    // that is more.
    assert_eq!(capped, Some(160));
    let (addr, admin) = (addr.unwrap(), admin.unwrap());
    // Connecting at once, as many clients would: those past the listen queue wait on their
    // own.
    let clients: Vec<_> = (0..400)
        .map(|_| tokio::spawn(TcpStream::connect(addr)))
        .collect();
    until_gauge(admin, "simserve_connections{listener=\"main\"}", |n| {
        n == 160.0
    })
    .await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(get_status(admin, path).await, Some(200), "{path}");
    }
    for client in clients {
        client.abort();
    }
    drop(server);
    log.join().unwrap();
}

#[tokio::test]
async fn a_client_that_leaves_before_its_body_has_arrived_is_counted_as_499_not_400() {
    let (addr, _stop, _server) = start(|_| {}).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /similarity/matrix HTTP/1.1\r\nHost: simserve\r\n\
              Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"a\": [[1",
        )
        .await
        .unwrap();
    // Its head has been read: the request is in flight, waiting for the body.
    until_gauge(addr, "simserve_http_requests_in_flight", |n| n >= 2.0).await;
    drop(stream);
    let closed =
        "simserve_http_requests_total{method=\"POST\",route=\"/similarity/matrix\",status=\"499\"}";
    until_gauge(addr, closed, |n| n == 1.0).await;
    let malformed =
        "simserve_http_requests_total{method=\"POST\",route=\"/similarity/matrix\",status=\"400\"}";
    assert!(!metrics_text(addr).await.contains(malformed));
    // A malformed body is still a 400.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"POST /similarity/matrix HTTP/1.1\r\nHost: simserve\r\n\
              Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        )
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    until_gauge(addr, malformed, |n| n == 1.0).await;
}

#[tokio::test]
async fn heads_the_http_layer_cannot_parse_are_answered_and_counted() {
    let (server, _stop, _task) = start_with_admin(|_| {}).await;
    let addr = server.addr;
    let counted = "simserve_http_malformed_requests_total{listener=\"main\"}";
    assert_eq!(gauge(addr, counted).await, 0.0);
    // Each listener's series from 0, so that the first malformed head is an increase.
    let admin = "simserve_http_malformed_requests_total{listener=\"admin\"}";
    assert_eq!(gauge(addr, admin).await, 0.0);
    let too_large = format!(
        "GET /healthz HTTP/1.1\r\nHost: simserve\r\nX-Pad: {}\r\n\r\n",
        "x".repeat(200_000)
    );
    for (head, status) in [("GARBAGE\r\n\r\n".to_owned(), "400"), (too_large, "431")] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // The server may close before it has read all of a head too large.
        let _ = stream.write_all(head.as_bytes()).await;
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer}"
        );
    }
    until_gauge(addr, counted, |n| n == 2.0).await;
}

/// Sends `head` (and no body) on a fresh connection; the status line's code and the JSON
/// body of the answer.
async fn answer_to_head(addr: SocketAddr, head: &str) -> (String, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer))
        .await
        .expect("the answer arrives and the connection closes")
        .unwrap();
    let (status_and_headers, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = status_and_headers.get(9..12).unwrap_or_default().to_owned();
    let json = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, json)
}

#[tokio::test]
async fn requests_without_one_good_host_get_400_bad_host_over_a_socket() {
    // With keys, so that a refused request without one shows the check comes first.
    let (addr, _stop, _task) = start(|c| c.api_keys = vec!["k1".into()]).await;
    let missing = "Host: missing; an HTTP/1.1 request names the host it is sent to";
    let not_a_host = "Host: not a host with an optional port (such as example.com:8080)";
    for (request, detail) in [
        (
            "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
            missing,
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: a.example\r\nHost: a.example\r\nConnection: close\r\n\r\n",
            "Host: given more than once; give it once",
        ),
        (
            "GET /healthz HTTP/1.1\r\nHost: user@a.example\r\nConnection: close\r\n\r\n",
            not_a_host,
        ),
        // Before authentication (401) and the cross-origin check (403).
        (
            "POST /similarity/pairwise HTTP/1.1\r\nHost: a.example/x\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            not_a_host,
        ),
        (
            "POST /similarity/pairwise HTTP/1.1\r\nHost: [::1]80\r\nOrigin: https://evil.example\r\nSec-Fetch-Site: cross-site\r\nContent-Type: application/json\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            not_a_host,
        ),
    ] {
        let (status, problem) = answer_to_head(addr, request).await;
        assert_eq!(status, "400", "{request:?}: {problem}");
        assert_eq!(
            problem["type"], "urn:simserve:problem:bad-host",
            "{problem}"
        );
        assert_eq!(problem["detail"], detail, "{request:?}");
    }
    // Under /v2, in the Open Inference Protocol's shape.
    let (status, error) = answer_to_head(
        addr,
        "GET /v2/health/ready HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        (status.as_str(), &error),
        ("400", &json!({"error": missing}))
    );
    // HTTP/1.0 may leave Host out, and an empty one is a Host.
    for request in [
        "GET /healthz HTTP/1.0\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: [::1]:8000\r\nConnection: close\r\n\r\n",
    ] {
        let (status, body) = answer_to_head(addr, request).await;
        assert_eq!(
            (status.as_str(), &body),
            ("200", &json!({"status": "ok"})),
            "{request:?}"
        );
    }
}
