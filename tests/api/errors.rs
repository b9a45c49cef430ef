//! Every class of bad input gets its status and a problem+json body naming field and index.

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use serde_json::{Value, json};

use crate::helpers::{app, app_and_state, app_with, b64_f32, metric_value, wait_until};

const MATRIX: &str = "/similarity/matrix";

fn b64(dtype: &str, shape: Value, data: &str) -> Value {
    json!({"dtype": dtype, "shape": shape, "data": data})
}

#[tokio::test]
async fn each_class_of_bad_tensor_is_a_422_naming_the_field_and_index() {
    let nan = b64_f32(&[1, 2], &[1.0, f32::NAN]);
    let inf = b64_f32(&[2, 1], &[1.0, f32::INFINITY]);
    let f64_too_big: Vec<u8> = 1e300f64.to_le_bytes().to_vec();
    use base64::Engine;
    let f64_too_big = base64::engine::general_purpose::STANDARD.encode(f64_too_big);
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "a: empty array"),
        (json!([[1.0], []]), "a[1]: empty array"),
        (json!([[1, 2], [3]]), "a[1]: row has 1 values, expected 2"),
        (json!([[1], [2, 3]]), "a[1]: row has more than 1 values"),
        (
            json!([1, 2]),
            "a: expected a tensor of rank 2 or 3, found rank 1",
        ),
        (
            json!([[[[1]]]]),
            "a: expected a tensor of rank 2 or 3, found rank 4",
        ),
        (
            json!([[1, [2]]]),
            "a[0][1]: expected a number, found an array",
        ),
        (json!([[1], 2]), "a[1]: expected an array, found a number"),
        (
            json!([[1, "2"]]),
            "a[0][1]: expected a number, found a string",
        ),
        (json!([[1, null]]), "a[0][1]: expected a number, found null"),
        (
            json!([[true]]),
            "a[0][0]: expected an array or a number, found a boolean",
        ),
        (
            json!([[{"x": 1}]]),
            "a[0][0]: expected an array or a number, found an object",
        ),
        (
            json!("[[1]]"),
            "a: expected nested arrays of numbers or a base64 tensor object, found a string",
        ),
        (
            json!(null),
            "a: expected nested arrays of numbers or a base64 tensor object, found null",
        ),
        (
            nan,
            "a[0][1]: value is NaN, infinite or outside the float32 range",
        ),
        (
            inf,
            "a[1][0]: value is NaN, infinite or outside the float32 range",
        ),
        (
            b64("float64", json!([1, 1]), &f64_too_big),
            "a[0][0]: value is NaN, infinite or outside the float32 range",
        ),
        (
            b64("float32", json!([1, 1]), "AAAA*A=="),
            "a.data: not valid standard base64",
        ),
        (
            b64("float32", json!([1, 2]), "AACAPw=="),
            "a.data: decodes to 4 bytes, shape [1, 2] of float32 needs 8",
        ),
        (b64("int8", json!([1, 1]), "AA=="), "a.dtype: unknown dtype"),
        (
            b64("float32", json!([1, 0]), ""),
            "a.shape[1]: axis has length 0",
        ),
        (
            b64("float32", json!([1, -1]), ""),
            "a.shape[1]: expected a non-negative integer",
        ),
        (
            b64("float32", json!([4, 1.5]), ""),
            "a.shape[1]: expected a non-negative integer",
        ),
        (
            b64("float32", json!([2147483648u64, 2147483648u64, 8]), ""),
            "a.shape: element count overflows",
        ),
        (
            b64("float32", json!([1]), "AACAPw=="),
            "a: expected a tensor of rank 2 or 3, found rank 1",
        ),
        (
            b64("float32", json!([1, 1, 1, 1]), "AACAPw=="),
            "a.shape: more than 3 axes",
        ),
        (
            json!({"dtype": "float32", "shape": [1, 1]}),
            "a: tensor object has no \"data\"",
        ),
        (
            json!({"dtype": "float32", "shape": [1, 1], "data": "AACAPw==", "extra": 1}),
            "a: tensor object keys are",
        ),
    ];
    let app = app();
    for (tensor, want) in cases {
        let got = app.post(MATRIX, &json!({"a": tensor})).await;
        got.assert_problem(422, want);
        assert_eq!(got.json["type"], "urn:simserve:problem:invalid-request");
        assert_eq!(got.json["title"], "Unprocessable Entity");
    }
}

#[tokio::test]
async fn numbers_that_overflow_float32_are_refused_not_turned_into_infinity() {
    let body = br#"{"a": [[1.0, 1e39]]}"#.to_vec();
    let got = app().post_raw(MATRIX, Some("application/json"), body).await;
    got.assert_problem(422, "a[0][1]: value is outside the float32 range");
    let body = br#"{"a": [[-3.5e38]]}"#.to_vec();
    let got = app().post_raw(MATRIX, Some("application/json"), body).await;
    got.assert_problem(422, "a[0][0]: value is outside the float32 range");
}

#[tokio::test]
async fn numbers_beyond_float64_and_nan_tokens_are_malformed_json() {
    let app = app();
    for body in [
        &br#"{"a": [[1e999]]}"#[..],
        br#"{"a": [[NaN]]}"#,
        br#"{"a": [[Infinity]]}"#,
    ] {
        let got = app
            .post_raw(MATRIX, Some("application/json"), body.to_vec())
            .await;
        got.assert_problem(400, "malformed JSON");
    }
}

#[tokio::test]
async fn unknown_fields_metrics_and_encodings_are_422() {
    let app = app();
    let got = app.post(MATRIX, &json!({"a": [[1]], "metrc": "dot"})).await;
    got.assert_problem(422, "unknown field `metrc`");
    let got = app
        .post(MATRIX, &json!({"a": [[1]], "metric": "jaccard"}))
        .await;
    got.assert_problem(
        422,
        "metric: expected one of \"cosine\", \"dot\", \"euclidean\", \"manhattan\", found a string",
    );
    let got = app
        .post(MATRIX, &json!({"a": [[1]], "response_encoding": "hex"}))
        .await;
    got.assert_problem(
        422,
        "response_encoding: expected \"json\" or \"base64\", found a string",
    );
    let got = app
        .post(MATRIX, &json!({"a": [[1]], "exclude_self": 1}))
        .await;
    got.assert_problem(422, "exclude_self: expected true or false, found 1");
    let got = app.post(MATRIX, &json!({"b": [[1]]})).await;
    got.assert_problem(422, "missing field `a`");
}

#[tokio::test]
async fn duplicate_keys_are_422() {
    let body = br#"{"a": [[1]], "a": [[2]]}"#.to_vec();
    let got = app().post_raw(MATRIX, Some("application/json"), body).await;
    got.assert_problem(422, "duplicate field `a`");
}

#[tokio::test]
async fn malformed_json_and_bodies_that_are_not_objects_are_400() {
    let app = app();
    let bodies: [(&[u8], &str); 7] = [
        (
            b"{\"a\": [[1]",
            "malformed JSON: EOF while parsing a list at line 1 column 10",
        ),
        (b"", "the body must be a JSON object"),
        (b"[[1]]", "the body must be a JSON object"),
        (b"null", "the body must be a JSON object"),
        (
            b"{\"a\": [[1]]} trailing",
            "malformed JSON: trailing characters at line 1 column 14",
        ),
        (
            b"\xef\xbb\xbf{\"a\": [[1]]}",
            "the body must be a JSON object",
        ),
        (
            b"{\"a\": \"\xff\"}",
            "malformed JSON: invalid unicode code point at line 1 column 8",
        ),
    ];
    for (body, detail) in bodies {
        let got = app
            .post_raw(MATRIX, Some("application/json"), body.to_vec())
            .await;
        got.assert_problem(400, detail);
        assert_eq!(got.detail(), detail);
        assert_eq!(got.json["type"], "urn:simserve:problem:malformed-json");
    }
}

#[tokio::test]
async fn deep_nesting_is_refused_without_recursion() {
    let depth = 10_000;
    let body = format!("{{\"a\": {}{}}}", "[".repeat(depth), "]".repeat(depth));
    let got = app()
        .post_raw(MATRIX, Some("application/json"), body.into_bytes())
        .await;
    got.assert_problem(422, "a: expected a tensor of rank 2 or 3, found rank 4");
}

#[tokio::test]
async fn a_missing_or_wrong_content_type_is_415() {
    let app = app();
    let body = br#"{"a": [[1]]}"#.to_vec();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let got = app.post_raw(MATRIX, content_type, body.clone()).await;
        got.assert_problem(
            415,
            "the request body must be sent with Content-Type: application/json",
        );
    }
    let got = app
        .post_raw(MATRIX, Some("application/json; charset=utf-8"), body)
        .await;
    assert_eq!(got.status, 200);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let app = app_with(|c| c.max_body_bytes = 1024);
    let rows: Vec<[f32; 4]> = vec![[0.5, 0.25, 0.125, 1.0]; 100];
    let got = app.post(MATRIX, &json!({"a": rows})).await;
    got.assert_problem(
        413,
        "the request body is larger than the limit of 1024 bytes",
    );
}

#[tokio::test]
async fn unknown_routes_are_404_and_wrong_methods_405_as_problem_json() {
    let app = app();
    app.request(Method::GET, "/nope")
        .await
        .assert_problem(404, "no resource at this path");
    let got = app.request(Method::GET, MATRIX).await;
    got.assert_problem(405, "this method is not allowed on this path");
    assert_eq!(got.headers["allow"], "POST");
    let got = app.request(Method::DELETE, "/healthz").await;
    got.assert_problem(405, "this method is not allowed on this path");
    assert_eq!(got.json["type"], "urn:simserve:problem:method-not-allowed");
    assert_eq!(got.headers["allow"], "GET,HEAD");
}

#[tokio::test]
async fn details_never_echo_large_input() {
    let huge = "x".repeat(100_000);
    let app = app();
    let got = app.post(MATRIX, &json!({"a": [[1]], "metric": huge})).await;
    got.assert_problem(
        422,
        "metric: expected one of \"cosine\", \"dot\", \"euclidean\", \"manhattan\", found a string",
    );
    assert!(
        got.detail().chars().count() <= 301,
        "{}",
        got.detail().len()
    );
    let got = app
        .post(MATRIX, &json!({"a": [[1]], huge.clone(): 1}))
        .await;
    // The unknown field's name is cut short.
    got.assert_problem(422, "unknown field `xxx");
    assert!(got.detail().ends_with('…'), "{}", got.detail());
    assert!(got.detail().chars().count() <= 301);
    let got = app.post(MATRIX, &json!({"a": [[1, huge]]})).await;
    got.assert_problem(422, "a[0][1]: expected a number, found a string");
    assert!(!got.detail().contains("xxx"));
}

#[tokio::test]
async fn a_bad_request_does_not_disturb_the_next_one() {
    let app = app();
    app.post(MATRIX, &json!({"a": [[1], [1, 2]]}))
        .await
        .assert_problem(422, "a[1]: row has more than 1 values");
    let got = app.post(MATRIX, &json!({"a": [[1, 0]]})).await;
    assert_eq!(got.ok()["matrix"], json!([[1.0]]));
}

/// 20,000 rows against themselves, 25.6 billion multiply-adds: a debug build takes about
/// 20 s on two cores (3,000 rows take 0.4 s, 6,000 take 1.4 s), so a deadline passes, or a
/// client leaves, while it computes. In base64, so that decoding is quick.
fn heavy_matrix_body() -> Value {
    let (rows, dim) = (20_000, 64);
    let values: Vec<f32> = (0..rows * dim)
        .map(|k| ((k / dim * 31 + k % dim * 7) % 97) as f32)
        .collect();
    json!({"a": b64_f32(&[rows, dim], &values), "metric": "euclidean", "top_k": 1})
}

#[tokio::test]
async fn a_request_past_the_deadline_gets_503_and_the_next_one_is_served() {
    // One permit and no queue: while anything holds the permit, a request is refused at once
    // ("every compute slot is busy"), so the next request below is served only if the first
    // gave its permit back.
    let (app, state) = app_and_state(|c| {
        c.request_timeout = Duration::from_millis(250);
        c.compute_permits = 1;
        c.max_queue = 0;
    });
    let app = Arc::new(app);
    let heavy = heavy_matrix_body();
    let first = {
        let app = Arc::clone(&app);
        tokio::spawn(async move { app.post(MATRIX, &heavy).await })
    };
    wait_until(
        Duration::from_secs(10),
        "the heavy request takes the only permit",
        || state.admission.computing() == 1,
    )
    .await;
    let got = first.await.unwrap();
    got.assert_problem(503, "the request did not finish within 250ms");
    assert_eq!(got.json["type"], "urn:simserve:problem:timeout");

    // Its computation is cancelled; once it has stopped, nothing stays taken.
    wait_until(
        Duration::from_secs(10),
        "the cancelled request gives back its permit and its memory",
        || state.admission.computing() == 0 && state.admission.reserved() == 0,
    )
    .await;
    assert_eq!(state.admission.waiting(), 0);
    let text = app.metrics().await;
    for (sample, want) in [
        ("simserve_compute_permits_in_use", 0.0),
        ("simserve_memory_reserved_bytes", 0.0),
        ("simserve_queue_depth", 0.0),
        ("simserve_rejections_total{reason=\"deadline\"}", 1.0),
    ] {
        assert_eq!(metric_value(&text, sample), want, "{sample}");
    }

    // The same app serves the next request, well within its deadline.
    let got = app.post(MATRIX, &json!({"a": [[1, 0]]})).await;
    assert_eq!(got.ok()["matrix"], json!([[1.0]]));
}

#[tokio::test]
async fn a_request_dropped_while_it_computes_is_counted_as_499_or_503_once_the_server_cuts() {
    let (app, state) = app_and_state(|_| {});
    let app = Arc::new(app);
    let heavy = heavy_matrix_body();
    // Sends the heavy request and, once it computes, drops it, as hyper does when the client
    // closes the connection; then waits until it has given back its permit and memory.
    let drop_while_computing = || async {
        let request = {
            let (app, heavy) = (Arc::clone(&app), heavy.clone());
            tokio::spawn(async move { app.post(MATRIX, &heavy).await })
        };
        wait_until(
            Duration::from_secs(10),
            "the heavy request computes",
            || state.admission.computing() == 1,
        )
        .await;
        request.abort();
        assert!(request.await.unwrap_err().is_cancelled());
        wait_until(
            Duration::from_secs(10),
            "the dropped request gives back its permit",
            || state.admission.computing() == 0 && state.admission.reserved() == 0,
        )
        .await;
        app.metrics().await
    };
    let status = |code: u16| {
        format!(
            "simserve_http_requests_total{{method=\"POST\",route=\"/similarity/matrix\",status=\"{code}\"}}"
        )
    };

    let text = drop_while_computing().await;
    assert_eq!(metric_value(&text, &status(499)), 1.0, "{text}");
    let timed = "simserve_http_request_duration_seconds_count{route=\"/similarity/matrix\"}";
    assert_eq!(metric_value(&text, timed), 1.0, "{text}");

    // Once the shutdown timeout has passed, a request dropped is the server's doing: 503.
    state.start_cutting();
    let text = drop_while_computing().await;
    assert_eq!(metric_value(&text, &status(503)), 1.0, "{text}");
    assert_eq!(metric_value(&text, &status(499)), 1.0, "{text}");
}
