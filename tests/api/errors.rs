//! Every class of bad input gets its status and a problem+json body naming field and index.

use axum::http::Method;
use serde_json::{Value, json};

use crate::helpers::{app, app_with, b64_f32};

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
    let bodies: [&[u8]; 7] = [
        b"{\"a\": [[1]",
        b"",
        b"[[1]]",
        b"null",
        b"{\"a\": [[1]]} trailing",
        b"\xef\xbb\xbf{\"a\": [[1]]}",
        b"{\"a\": \"\xff\"}",
    ];
    for body in bodies {
        let got = app
            .post_raw(MATRIX, Some("application/json"), body.to_vec())
            .await;
        got.assert_problem(400, "");
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
    app.request(Method::DELETE, "/healthz")
        .await
        .assert_problem(405, "");
}

#[tokio::test]
async fn details_never_echo_large_input() {
    let huge = "x".repeat(100_000);
    let app = app();
    let got = app.post(MATRIX, &json!({"a": [[1]], "metric": huge})).await;
    assert_eq!(got.status, 422);
    assert!(
        got.detail().chars().count() <= 301,
        "{}",
        got.detail().len()
    );
    let got = app
        .post(MATRIX, &json!({"a": [[1]], huge.clone(): 1}))
        .await;
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
        .assert_problem(422, "a[1]");
    let got = app.post(MATRIX, &json!({"a": [[1, 0]]})).await;
    assert_eq!(got.ok()["matrix"], json!([[1.0]]));
}

#[tokio::test]
async fn a_request_past_the_deadline_gets_503_and_the_next_one_is_served() {
    let app = app_with(|c| c.request_timeout = std::time::Duration::from_millis(1));
    let rows: Vec<Vec<f32>> = (0..3000)
        .map(|i| (0..64).map(|j| ((i * 31 + j * 7) % 97) as f32).collect())
        .collect();
    let got = app
        .post(
            MATRIX,
            &json!({"a": rows, "metric": "euclidean", "top_k": 1}),
        )
        .await;
    got.assert_problem(503, "the request did not finish within 1ms");
    assert_eq!(got.json["type"], "urn:simserve:problem:timeout");
    let relaxed = app_with(|c| c.request_timeout = std::time::Duration::from_secs(30));
    let got = relaxed.post(MATRIX, &json!({"a": [[1, 0]]})).await;
    assert_eq!(got.status, 200);
}
