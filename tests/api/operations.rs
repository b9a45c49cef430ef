//! Operations through the router: request ids, authentication, metrics, readiness,
//! compression, panics, admission control and body deadlines.

use std::io::Read;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::routing::get;
use futures_util::stream::{self, StreamExt};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::helpers::{
    app, app_and_state, app_with, app_with_routes, check_against_spec, gzip, gzip_bomb,
    metric_value, one_permit, small_body, take_a_permit, wait_until,
};

const PAIRWISE: &str = "/similarity/pairwise";

/// A JSON POST to `path`, for the caller to add headers and a body to.
fn post(path: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, "application/json")
}

/// A pairwise POST of an already gzipped body.
fn gzipped(body: Vec<u8>) -> Request<Body> {
    post(PAIRWISE)
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn a_plain_request_id_is_echoed_and_others_are_replaced_by_a_uuid() {
    let app = app();
    let request = |id: &str| {
        Request::builder()
            .uri("/healthz")
            .header("x-request-id", id)
            .body(Body::empty())
            .unwrap()
    };
    let kept = app.send(request("client-42")).await;
    assert_eq!(kept.headers["x-request-id"], "client-42");

    let replaced = app.send(request("has spaces")).await;
    let id = replaced.headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "{id}");
    assert!(uuid_like(id), "{id}");

    let generated = app.request(Method::GET, "/healthz").await;
    let other = app.request(Method::GET, "/healthz").await;
    assert_ne!(
        generated.headers["x-request-id"],
        other.headers["x-request-id"]
    );
}

fn uuid_like(id: &str) -> bool {
    id.split('-').map(str::len).eq([8, 4, 4, 4, 12])
        && id.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
}

#[tokio::test]
async fn problem_bodies_carry_the_request_id_of_their_response() {
    let app = app();
    let bad = Request::builder()
        .method(Method::POST)
        .uri(PAIRWISE)
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-request-id", "trace-7")
        .body(Body::from("{\"a\": [[1]], \"b\": [[1, 2]]}"))
        .unwrap();
    let got = app.send(bad).await;
    got.assert_problem(422, "b: vectors have dimension 2");
    assert_eq!(got.json["request_id"], "trace-7");
    assert_eq!(got.headers["x-request-id"], "trace-7");

    let missing = app.request(Method::GET, "/nowhere").await;
    assert_eq!(
        missing.json["request_id"],
        missing.headers["x-request-id"].to_str().unwrap()
    );
}

#[tokio::test]
async fn with_api_keys_the_similarity_routes_need_a_listed_bearer_token() {
    let app = app_with(|c| c.api_keys = vec!["k-one".into(), "k-two".into()]);
    let with_auth = |auth: Option<&str>| {
        let mut request = post(PAIRWISE);
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        request.body(Body::from(small_body().to_string())).unwrap()
    };
    for auth in [
        None,
        Some("Bearer nope"),
        Some("Basic k-one"),
        Some("Bearer "),
    ] {
        let got = app.send(with_auth(auth)).await;
        got.assert_problem(401, "this route needs an Authorization: Bearer token");
        assert_eq!(got.headers[header::WWW_AUTHENTICATE], "Bearer");
    }
    for auth in ["Bearer k-one", "bearer k-two"] {
        app.send(with_auth(Some(auth))).await.ok();
    }
    let tables = app.request(Method::GET, "/tables").await;
    assert_eq!(tables.status, StatusCode::UNAUTHORIZED);
    // The probes, and the page with the contract it links to: static text, no key needed.
    for open in ["/healthz", "/readyz", "/metrics", "/", "/openapi.yaml"] {
        let got = app.request(Method::GET, open).await;
        assert_eq!(got.status, StatusCode::OK, "{open}");
    }
}

#[tokio::test]
async fn without_api_keys_no_token_is_needed() {
    app().post(PAIRWISE, &small_body()).await.ok();
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_with_sizes_and_latency() {
    let app = app();
    app.post(PAIRWISE, &small_body()).await.ok();
    app.post(PAIRWISE, &json!({"a": [[1]]}))
        .await
        .assert_problem(422, "b: missing");
    app.request(Method::GET, "/no/such/path").await;
    // `metrics()` checks the status and the OpenMetrics content type.
    let text = app.metrics().await;
    let body_len = small_body().to_string().len() + json!({"a": [[1]]}).to_string().len();
    for (sample, want) in [
        (
            "simserve_http_requests_total{method=\"POST\",route=\"/similarity/pairwise\",status=\"200\"}",
            1,
        ),
        (
            "simserve_http_requests_total{method=\"POST\",route=\"/similarity/pairwise\",status=\"422\"}",
            1,
        ),
        (
            "simserve_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}",
            1,
        ),
        (
            "simserve_http_request_duration_seconds_count{route=\"/similarity/pairwise\"}",
            2,
        ),
        (
            "simserve_compute_duration_seconds_count{route=\"/similarity/pairwise\"}",
            1,
        ),
        (
            "simserve_http_request_body_bytes_total{route=\"/similarity/pairwise\"}",
            body_len,
        ),
        ("simserve_http_requests_in_flight", 1),
        ("simserve_queue_depth", 0),
        ("simserve_compute_permits_in_use", 0),
        ("simserve_memory_reserved_bytes", 0),
    ] {
        assert_eq!(metric_value(&text, sample), want as f64, "{sample}");
    }
    let out = metric_value(
        &text,
        "simserve_http_response_body_bytes_total{route=\"/similarity/pairwise\"}",
    );
    assert!(out > 50.0, "{out}");
}

#[tokio::test]
async fn readiness_turns_503_when_draining_while_liveness_stays_200() {
    let (app, state) = app_and_state(|_| {});
    assert_eq!(
        app.request(Method::GET, "/readyz").await.json["status"],
        "ready"
    );
    state.start_draining();
    let got = app.request(Method::GET, "/readyz").await;
    got.assert_problem(503, "the server is shutting down");
    assert_eq!(got.json["type"], "urn:simserve:problem:draining");
    assert_eq!(
        app.request(Method::GET, "/healthz").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn responses_are_gzip_or_zstd_compressed_when_asked() {
    let app = app();
    // Over a kilobyte of scores, so the job itself compresses them.
    let a: Vec<[f32; 3]> = (0..256).map(|i| [1.0, i as f32, 3.0]).collect();
    let b = vec![[3.0, 2.0, 1.0]; 256];
    let body = json!({"a": a, "b": b}).to_string();
    let plain = app
        .post(PAIRWISE, &serde_json::from_str(&body).unwrap())
        .await;
    for encoding in ["gzip", "zstd"] {
        let request = post(PAIRWISE)
            .header(header::ACCEPT_ENCODING, encoding)
            .body(Body::from(body.clone()))
            .unwrap();
        let response = app.raw(request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_ENCODING], encoding);
        assert_eq!(response.headers()[header::VARY], "accept-encoding");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let inflated = match encoding {
            "gzip" => {
                let mut out = Vec::new();
                flate2::read::GzDecoder::new(&bytes[..])
                    .read_to_end(&mut out)
                    .unwrap();
                out
            }
            _ => zstd::decode_all(&bytes[..]).unwrap(),
        };
        assert!(bytes.len() < inflated.len() / 2, "{encoding}");
        let json: Value = serde_json::from_slice(&inflated).unwrap();
        assert_eq!(json, plain.json, "{encoding}");
    }
}

#[tokio::test]
async fn every_answer_is_marked_nosniff_and_not_stored_unless_it_says_otherwise() {
    let app = app_with(|c| c.api_keys = vec!["k1".into()]);
    let keyed = |method: Method, path: &str, body: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, "Bearer k1")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let small = small_body().to_string();
    let cases = [
        (keyed(Method::POST, PAIRWISE, &small), StatusCode::OK),
        (
            keyed(Method::POST, PAIRWISE, "{\"a\": 1}"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            post(PAIRWISE).body(Body::from(small.clone())).unwrap(),
            StatusCode::UNAUTHORIZED,
        ),
        (keyed(Method::GET, "/nope", ""), StatusCode::NOT_FOUND),
        (
            keyed(Method::GET, PAIRWISE, ""),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (keyed(Method::GET, "/tables", ""), StatusCode::OK),
        (keyed(Method::GET, "/metrics", ""), StatusCode::OK),
        (keyed(Method::GET, "/healthz", ""), StatusCode::OK),
        (keyed(Method::GET, "/openapi.yaml", ""), StatusCode::OK),
        (
            keyed(Method::GET, "/v2/models/nope", ""),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (request, status) in cases {
        let path = request.uri().path().to_owned();
        let got = app.send_unchecked(request).await;
        assert_eq!(got.status, status, "{path}: {}", got.json);
        assert_eq!(
            got.headers[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff",
            "{path}"
        );
        assert_eq!(got.headers[header::CACHE_CONTROL], "no-store", "{path}");
    }
    // A compressed answer too; and the page's files keep their own revalidation.
    let a: Vec<[f32; 3]> = (0..256).map(|i| [1.0, i as f32, 3.0]).collect();
    let body = json!({"a": a, "b": vec![[3.0, 2.0, 1.0]; 256]}).to_string();
    let mut request = keyed(Method::POST, PAIRWISE, &body);
    request
        .headers_mut()
        .insert(header::ACCEPT_ENCODING, "gzip".parse().unwrap());
    let response = app.raw(request).await;
    assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
    assert_eq!(
        response.headers()[header::X_CONTENT_TYPE_OPTIONS],
        "nosniff"
    );
    assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    let page = app.request(Method::GET, "/").await;
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-cache");
    assert_eq!(page.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
}

#[tokio::test]
async fn answers_under_a_kilobyte_are_sent_uncompressed_and_counted_as_sent() {
    let app = app();
    for (path, body) in [
        (PAIRWISE, Some(small_body().to_string())),
        // Server metadata: over the 32 bytes from which the layer compressed before.
        ("/v2", None),
    ] {
        let request = match &body {
            Some(body) => post(path).body(Body::from(body.clone())),
            None => Request::get(path).body(Body::empty()),
        };
        let request = {
            let mut request = request.unwrap();
            let gzip = header::HeaderValue::from_static("gzip");
            request.headers_mut().insert(header::ACCEPT_ENCODING, gzip);
            request
        };
        let response = app.raw(request).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(
            !response.headers().contains_key(header::CONTENT_ENCODING),
            "{path}: {:?}",
            response.headers()
        );
        let sent = response.into_body().collect().await.unwrap().to_bytes();
        assert!(
            (32..1024).contains(&sent.len()),
            "{path}: {} bytes",
            sent.len()
        );
        if path == PAIRWISE {
            let counted = app
                .metric("simserve_http_response_body_bytes_total{route=\"/similarity/pairwise\"}")
                .await;
            assert_eq!(counted, sent.len() as f64);
        }
    }
}

#[tokio::test]
async fn an_accept_encoding_that_refuses_every_coding_simserve_has_gets_the_answer_as_it_is() {
    let app = app();
    let a: Vec<[f32; 3]> = (0..256).map(|i| [1.0, i as f32, 3.0]).collect();
    let body = json!({"a": a, "b": a}).to_string();
    let plain = app
        .post(PAIRWISE, &serde_json::from_str(&body).unwrap())
        .await;
    for accept in ["identity;q=0", "*;q=0", "br, identity;q=0", "gzip;Q=0"] {
        let request = post(PAIRWISE)
            .header(header::ACCEPT_ENCODING, accept)
            .body(Body::from(body.clone()))
            .unwrap();
        let got = app.send(request).await;
        assert_eq!(got.status, StatusCode::OK, "{accept}");
        assert!(
            !got.headers.contains_key(header::CONTENT_ENCODING),
            "{accept}"
        );
        assert_eq!(got.json, plain.json, "{accept}");
        let request = Request::get("/healthz")
            .header(header::ACCEPT_ENCODING, accept)
            .body(Body::empty())
            .unwrap();
        let response = app.raw(request).await;
        assert_eq!(response.status(), StatusCode::OK, "{accept}");
    }
}

#[tokio::test]
async fn gzip_and_zstd_request_bodies_are_decoded() {
    let app = app();
    let body = small_body().to_string();
    let encoded = [
        ("gzip", gzip(body.as_bytes())),
        ("zstd", zstd::encode_all(body.as_bytes(), 1).unwrap()),
    ];
    for (encoding, bytes) in encoded {
        let request = post(PAIRWISE)
            .header(header::CONTENT_ENCODING, encoding)
            .body(Body::from(bytes))
            .unwrap();
        let got = app.send(request).await;
        assert_eq!(got.ok()["scores"], json!([0.0]), "{encoding}");
    }
}

#[tokio::test]
async fn a_gzip_bomb_is_413_and_leaves_no_memory_reserved() {
    let bomb = gzip_bomb();
    assert!(bomb.len() < 200 << 10, "{}", bomb.len());
    let (app, state) = app_and_state(|_| {});
    let request = gzipped(bomb);
    app.send(request).await.assert_problem(
        413,
        "the request body inflates more than 200 times its compressed size",
    );
    assert_eq!(state.admission.reserved(), 0);
    app.post(PAIRWISE, &small_body()).await.ok();
}

#[tokio::test]
async fn a_compressed_body_over_the_limit_once_inflated_is_413() {
    let app = app_with(|c| c.max_body_bytes = 4096);
    let rows: Vec<Vec<f32>> = (0..40)
        .map(|i| (0..16).map(|j| (i * j) as f32 / 7.0).collect())
        .collect();
    let body = json!({"a": rows, "b": rows}).to_string();
    let packed = gzip(body.as_bytes());
    assert!(packed.len() < 4096 && body.len() > 4096);
    let request = gzipped(packed);
    app.send(request).await.assert_problem(
        413,
        "the request body is larger than the limit of 4096 bytes",
    );
}

#[tokio::test]
async fn unknown_or_corrupt_content_encodings_are_refused() {
    let app = app();
    let brotli = post(PAIRWISE)
        .header(header::CONTENT_ENCODING, "br")
        .body(Body::from(small_body().to_string()))
        .unwrap();
    app.send(brotli)
        .await
        .assert_problem(415, "the request body's Content-Encoding must be");
    let corrupt = post(PAIRWISE)
        .header(header::CONTENT_ENCODING, "gzip")
        .body(Body::from(&b"\x1f\x8b not really gzip"[..]))
        .unwrap();
    app.send(corrupt)
        .await
        .assert_problem(400, "could not decompress the gzip body");
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_problem_and_the_service_keeps_serving() {
    async fn boom() -> &'static str {
        panic!("secret internals")
    }
    let app = app_with_routes(simserve::app::routes().route("/boom", get(boom)));
    let request = || Request::builder().uri("/boom").body(Body::empty()).unwrap();
    let got = app.send_unchecked(request()).await;
    assert_eq!(got.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(got.content_type, "application/problem+json");
    assert_eq!(got.json["type"], "urn:simserve:problem:internal");
    assert!(!got.json.to_string().contains("secret"), "{}", got.json);
    check_against_spec(
        &Method::POST,
        PAIRWISE,
        got.status,
        &got.content_type,
        &got.json,
    );
    app.post(PAIRWISE, &small_body()).await.ok();
    assert_eq!(app.send_unchecked(request()).await.status, 500);
}

/// An app with one compute permit, already taken (the returned permit), and a queue of
/// `max_queue`.
async fn one_busy_permit(
    max_queue: usize,
) -> (
    crate::helpers::TestApp,
    simserve::state::AppState,
    simserve::admission::Admitted,
) {
    let (app, state) = app_and_state(one_permit(max_queue));
    let held = take_a_permit(&state).await;
    (app, state, held)
}

#[tokio::test]
async fn with_every_permit_taken_and_no_queue_requests_get_503_with_retry_after_at_once() {
    let (app, _state, held) = one_busy_permit(0).await;
    let got = app.post(PAIRWISE, &small_body()).await;
    got.assert_problem(503, "every compute slot is busy and the wait queue is full");
    assert_eq!(got.json["type"], "urn:simserve:problem:overloaded");
    assert_eq!(got.headers[header::RETRY_AFTER], "1");
    assert_eq!(
        app.metric("simserve_rejections_total{reason=\"queue_full\"}")
            .await,
        1.0
    );
    assert_eq!(
        app.request(Method::GET, "/healthz").await.status,
        StatusCode::OK
    );
    drop(held);
    app.post(PAIRWISE, &small_body()).await.ok();
}

#[tokio::test]
async fn a_queued_request_waits_for_a_permit_and_is_then_served() {
    let (app, state, held) = one_busy_permit(1).await;
    let app = std::sync::Arc::new(app);
    let queued = {
        let app = std::sync::Arc::clone(&app);
        tokio::spawn(async move { app.post(PAIRWISE, &small_body()).await })
    };
    wait_until(
        Duration::from_secs(10),
        "the request joins the queue",
        || state.admission.waiting() > 0,
    )
    .await;
    assert_eq!(app.metric("simserve_queue_depth").await, 1.0);
    // The queue is full now: the next one is refused at once.
    app.post(PAIRWISE, &small_body())
        .await
        .assert_problem(503, "every compute slot");
    drop(held);
    assert_eq!(queued.await.unwrap().ok()["scores"], json!([0.0]));
}

#[tokio::test]
async fn a_request_needing_more_than_the_whole_memory_budget_is_422() {
    let app = app_with(|c| c.memory_budget_bytes = 4 << 20);
    let rows = vec![vec![0.5f32; 64]; 1000];
    let got = app.post("/similarity/matrix", &json!({"a": rows})).await;
    got.assert_problem(422, "this request needs about");
    assert!(
        got.detail().contains("memory budget of 4194304"),
        "{}",
        got.detail()
    );
}

#[tokio::test]
async fn exclude_lists_are_charged_as_their_buffers_hold_them_and_as_the_selection_copies_them() {
    // 2^20 + 1 entries, read one by one into a buffer grown to 2^21 (16 MiB), and sorted by
    // the selection in a copy (8 MiB): about 25 MiB while the job runs, where counting the
    // entries once would charge 8 MiB. The 2 MiB body and its parsing fit in the budget.
    let entries = (1 << 20) + 1;
    let body =
        json!({"users": [[1.0]], "items": [[1.0]], "top_k": 1, "exclude": [vec![0; entries]]});
    let app = app_with(|c| c.memory_budget_bytes = 23 << 20);
    let got = app.post("/similarity/user-item", &body).await;
    got.assert_problem(422, "this request needs about");
    // With room for all of it, it is answered.
    let app = app_with(|c| c.memory_budget_bytes = 32 << 20);
    let got = app.post("/similarity/user-item", &body).await;
    assert_eq!(got.ok()["indices"], json!([[]]));
}

#[tokio::test]
async fn an_answer_waiting_to_be_read_holds_only_its_own_bytes_of_the_budget() {
    let (app, state) = app_and_state(|_| {});
    let a: Vec<Vec<f32>> = (0..300)
        .map(|i| (0..64).map(|j| ((i * 7 + j) % 13) as f32 - 6.0).collect())
        .collect();
    let body = json!({"a": a, "b": a}).to_string();
    let request = post("/similarity/matrix").body(Body::from(body)).unwrap();
    // The answer's body, not yet read: a client that has not read it yet.
    let response = app.raw(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    let held = state.admission.reserved();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    // The pieces' buffers, with the room their texts were written in (a buffer grown by
    // doubling may hold twice its length); its job's estimate (inputs, scores and their text
    // at their longest) was 28 times the answer.
    assert!(held >= bytes.len(), "{held} held for {} bytes", bytes.len());
    assert!(
        held < bytes.len() * 4,
        "{held} held for {} bytes",
        bytes.len()
    );
    // Read and let go, it holds nothing.
    drop(bytes);
    assert_eq!(state.admission.reserved(), 0);
}

#[tokio::test]
async fn a_body_arriving_while_the_memory_budget_is_taken_is_503_with_retry_after() {
    let (app, state) = app_and_state(|c| c.memory_budget_bytes = 1 << 20);
    let mut taken = state.admission.reservation();
    taken.grow(900 << 10).unwrap();
    let rows = vec![vec![1.0; 64]; 2000];
    let body = json!({"a": rows, "b": rows}).to_string();
    assert!(body.len() > 200 << 10);
    let got = app
        .post(PAIRWISE, &serde_json::from_str(&body).unwrap())
        .await;
    got.assert_problem(503, "this request needs about");
    assert_eq!(got.headers[header::RETRY_AFTER], "1");
    drop(taken);
    app.post(PAIRWISE, &small_body()).await.ok();
    assert_eq!(state.admission.reserved(), 0);
}

#[tokio::test]
async fn a_body_arriving_in_many_frames_split_mid_number_is_read_whole() {
    let (app, state) = app_and_state(|_| {});
    let a: Vec<Vec<f32>> = (0..50)
        .map(|i| (0..16).map(|j| (i * 16 + j) as f32 * 0.25 - 7.0).collect())
        .collect();
    let body = json!({"a": a, "b": a, "metric": "dot"}).to_string();
    let want: Vec<f32> = a.iter().map(|x| x.iter().map(|v| v * v).sum()).collect();
    // Without a declared length the buffer grows; with one it is sized once.
    for declared in [None, Some(body.len())] {
        let frames: Vec<Result<axum::body::Bytes, std::io::Error>> = body
            .as_bytes()
            .chunks(7)
            .map(|piece| Ok(axum::body::Bytes::copy_from_slice(piece)))
            .collect();
        assert!(frames.len() > 100);
        let mut request = post(PAIRWISE);
        if let Some(length) = declared {
            request = request.header(header::CONTENT_LENGTH, length);
        }
        let request = request
            .body(Body::from_stream(stream::iter(frames)))
            .unwrap();
        let got = app.send(request).await;
        assert_eq!(got.status, StatusCode::OK, "{declared:?}");
        assert_eq!(got.json["scores"], json!(want), "{declared:?}");
        assert_eq!(state.admission.reserved(), 0);
    }
}

#[tokio::test]
async fn a_body_that_stalls_past_the_body_timeout_is_408() {
    let app = app_with(|c| c.body_timeout = Duration::from_millis(100));
    let start = stream::iter([Ok::<_, std::io::Error>(axum::body::Bytes::from_static(
        b"{\"a\": [[1",
    ))]);
    let stalled = Body::from_stream(start.chain(stream::pending()));
    let request = post(PAIRWISE).body(stalled).unwrap();
    let got = app.send(request).await;
    got.assert_problem(408, "the request body did not arrive within 100ms");
    assert_eq!(got.json["type"], "urn:simserve:problem:body-timeout");
}

#[tokio::test]
async fn cors_is_off_by_default_and_answers_listed_origins_when_configured() {
    let preflight = || {
        Request::builder()
            .method(Method::OPTIONS)
            .uri(PAIRWISE)
            .header(header::ORIGIN, "https://app.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "content-type,authorization",
            )
            .body(Body::empty())
            .unwrap()
    };
    let off = app().raw(preflight()).await;
    assert!(
        off.headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );

    let on = app_with(|c| c.cors_origins = vec!["https://app.example".into()]);
    let got = on.raw(preflight()).await;
    assert_eq!(got.status(), StatusCode::OK);
    assert_eq!(
        got.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example"
    );
    let other = Request::builder()
        .method(Method::OPTIONS)
        .uri(PAIRWISE)
        .header(header::ORIGIN, "https://evil.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .body(Body::empty())
        .unwrap();
    let refused = on.raw(other).await;
    assert!(
        refused
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none()
    );
    // Preflights are counted (and logged) as every request is.
    let counted = metric_value(
        &on.metrics().await,
        "simserve_http_requests_total{method=\"OPTIONS\",route=\"/similarity/pairwise\",status=\"200\"}",
    );
    assert_eq!(counted, 2.0);
}

#[tokio::test]
async fn answers_given_before_the_body_was_read_say_the_connection_will_close() {
    let app = app();
    let unread = Request::builder()
        .method(Method::POST)
        .uri("/similarity/nothing")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, "2")
        .body(Body::from("{}"))
        .unwrap();
    let got = app.send(unread).await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert_eq!(got.headers[header::CONNECTION], "close");

    let body = small_body().to_string();
    let read = post(PAIRWISE)
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .unwrap();
    let got = app.send(read).await;
    assert_eq!(got.status, StatusCode::OK);
    assert!(got.headers.get(header::CONNECTION).is_none());
}

/// A POST of the small pairwise body with `headers` (name, value).
fn pairwise_with(headers: &[(&str, &str)]) -> Request<Body> {
    headers
        .iter()
        .fold(post(PAIRWISE), |request, (name, value)| {
            request.header(*name, *value)
        })
        .body(Body::from(small_body().to_string()))
        .unwrap()
}

#[tokio::test]
async fn browser_pages_of_other_origins_cannot_post_but_their_own_and_trusted_ones_can() {
    let app = app_with(|c| {
        c.cors_origins = vec!["https://app.example".into()];
        c.trusted_origins = vec!["https://gateway.example".into()];
    });
    let cross = |origin| [("sec-fetch-site", "cross-site"), ("origin", origin)];
    let refused = [
        cross("https://evil.example").to_vec(),
        vec![
            ("sec-fetch-site", "same-site"),
            ("origin", "https://sub.app.example"),
        ],
        // A browser without Sec-Fetch-Site (plain HTTP to an address other than localhost):
        // its Origin must name the Host; `null` (a sandboxed frame, a redirect) never does.
        vec![
            ("origin", "https://evil.example"),
            ("host", "simserve.example"),
        ],
        vec![("origin", "null"), ("host", "simserve.example")],
    ];
    for headers in refused {
        let got = app.send(pairwise_with(&headers)).await;
        got.assert_problem(
            403,
            "a browser page of another origin may not send this request",
        );
        assert_eq!(
            got.json["type"], "urn:simserve:problem:cross-origin",
            "{headers:?}"
        );
    }
    let allowed = [
        vec![],
        vec![
            ("sec-fetch-site", "same-origin"),
            ("origin", "http://simserve.example"),
        ],
        vec![("sec-fetch-site", "none")],
        cross("https://app.example").to_vec(),
        cross("https://gateway.example").to_vec(),
        vec![
            ("origin", "http://simserve.example"),
            ("host", "simserve.example"),
        ],
    ];
    for headers in allowed {
        let got = app.send(pairwise_with(&headers)).await;
        assert_eq!(got.status, StatusCode::OK, "{headers:?}: {:?}", got.json);
    }
    let counted = metric_value(
        &app.metrics().await,
        "simserve_http_requests_total{method=\"POST\",route=\"/similarity/pairwise\",status=\"403\"}",
    );
    assert_eq!(counted, 4.0);

    // Reads pass; a table reload and an inference (whose body may be untyped) do not, the
    // latter refused in the protocol's shape.
    let read = Request::builder()
        .uri("/tables")
        .header("sec-fetch-site", "cross-site")
        .header("origin", "https://evil.example")
        .body(Body::empty())
        .unwrap();
    assert_ne!(app.send(read).await.status, StatusCode::FORBIDDEN);
    for path in ["/tables/reload", "/v2/models/matrix/infer"] {
        let request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("sec-fetch-site", "cross-site")
            .header("origin", "https://evil.example")
            .body(Body::from("{}"))
            .unwrap();
        let got = app.send(request).await;
        assert_eq!(got.status, StatusCode::FORBIDDEN, "{path}");
        let detail = if path.starts_with("/v2") {
            &got.json["error"]
        } else {
            &got.json["detail"]
        };
        assert!(
            detail.as_str().unwrap().contains("Sec-Fetch-Site, Origin"),
            "{path}: {:?}",
            got.json
        );
    }
}

#[tokio::test]
async fn a_star_among_the_trusted_origins_lets_any_page_post() {
    for change in [
        (|c: &mut simserve::Config| c.trusted_origins = vec!["*".into()]) as fn(&mut _),
        |c| c.cors_origins = vec!["*".into()],
    ] {
        let app = app_with(change);
        let headers = [
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
        ];
        assert_eq!(
            app.send(pairwise_with(&headers)).await.status,
            StatusCode::OK
        );
    }
}
