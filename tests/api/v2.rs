//! The Open Inference Protocol routes: metadata, health, every model in JSON and binary form
//! against the native routes' answers, and each bad input's status and error text.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, app, app_and_state, check_against_spec, floats, gzip, index_rows, metric_value,
    one_permit, take_a_permit,
};

/// A decoded answer: status, headers, the JSON (the whole body, or the part before the
/// binary data) and the binary data.
struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    json: Value,
    binary: Vec<u8>,
}

impl Answer {
    /// The output `name`.
    fn output(&self, name: &str) -> &Value {
        self.json["outputs"]
            .as_array()
            .unwrap_or_else(|| panic!("no outputs in {}", self.json))
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("no output {name} in {}", self.json))
    }

    /// The bytes of the binary output `name`.
    fn bytes_of(&self, name: &str) -> &[u8] {
        let mut start = 0;
        for output in self.json["outputs"].as_array().unwrap() {
            let Some(size) = output["parameters"]["binary_data_size"].as_u64() else {
                continue;
            };
            let end = start + size as usize;
            if output["name"] == name {
                return &self.binary[start..end];
            }
            start = end;
        }
        panic!("{name} is not binary")
    }

    /// The float output `name` (JSON or binary) as (shape, values).
    fn floats(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let output = self.output(name);
        assert_eq!(output["datatype"], "FP32");
        let values = match output.get("data") {
            Some(data) => data
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect(),
            None => self
                .bytes_of(name)
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        };
        (shape(output), values)
    }

    /// The INT64 output `name` (JSON or binary) as (shape, values).
    fn ints(&self, name: &str) -> (Vec<usize>, Vec<i64>) {
        let output = self.output(name);
        assert_eq!(output["datatype"], "INT64");
        let values = match output.get("data") {
            Some(data) => data
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect(),
            None => self
                .bytes_of(name)
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        };
        (shape(output), values)
    }

    /// Asserts an `{"error"}` answer with `status` whose text starts with `prefix`.
    #[track_caller]
    fn assert_error(&self, status: u16, prefix: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.json);
        let error = self.json["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with(prefix),
            "error {error:?} does not start with {prefix:?}"
        );
        assert_eq!(self.json.as_object().unwrap().len(), 1, "{}", self.json);
    }
}

fn shape(output: &Value) -> Vec<usize> {
    output["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect()
}

/// An inference request: `json`, then `binary` with its length header when there is any;
/// its `Content-Length` declared, as clients do.
fn infer_request(path: &str, json: &Value, binary: &[u8]) -> Request<Body> {
    let head = json.to_string().into_bytes();
    let mut request = Request::post(path).header(header::CONTENT_LENGTH, head.len() + binary.len());
    if !binary.is_empty() {
        request = request
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header("inference-header-content-length", head.len());
    }
    let mut body = head;
    body.extend_from_slice(binary);
    request.body(Body::from(body)).unwrap()
}

/// Sends `request`, checks the answer against openapi.yaml and splits its body.
async fn send(app: &TestApp, request: Request<Body>) -> Answer {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let response = app.raw(request).await;
    let status = response.status();
    let headers = response.headers().clone();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    let (json, binary): (Value, Vec<u8>) = match headers.get("inference-header-content-length") {
        Some(length) => {
            assert_eq!(content_type, "application/octet-stream");
            let length: usize = length.to_str().unwrap().parse().unwrap();
            let (json, binary) = bytes.split_at(length);
            (serde_json::from_slice(json).unwrap(), binary.to_vec())
        }
        None => (serde_json::from_slice(&bytes).unwrap(), Vec::new()),
    };
    let checked = if binary.is_empty() {
        json.clone()
    } else {
        Value::String("binary".into())
    };
    check_against_spec(&method, &path, status, &content_type, &checked);
    if !binary.is_empty() {
        check_against_spec(&method, &path, status, "application/json", &json);
    }
    Answer {
        status,
        headers,
        json,
        binary,
    }
}

async fn get(app: &TestApp, path: &str) -> Answer {
    send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

async fn infer(app: &TestApp, model: &str, json: &Value, binary: &[u8]) -> Answer {
    let path = format!("/v2/models/{model}/infer");
    send(app, infer_request(&path, json, binary)).await
}

fn le_f32(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn le_i64(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A JSON input.
fn input(name: &str, shape: &[usize], datatype: &str, data: Value) -> Value {
    json!({"name": name, "shape": shape, "datatype": datatype, "data": data})
}

/// A binary input of `bytes` bytes.
fn binary_input(name: &str, shape: &[usize], datatype: &str, bytes: usize) -> Value {
    json!({"name": name, "shape": shape, "datatype": datatype,
           "parameters": {"binary_data_size": bytes}})
}

/// Rows of `n` × `dim` made-up vectors.
fn rows(n: usize, dim: usize, seed: usize) -> Vec<f32> {
    (0..n * dim)
        .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0) - 1.0)
        .collect()
}

fn nested(values: &[f32], dim: usize) -> Value {
    json!(values.chunks(dim).collect::<Vec<_>>())
}

#[tokio::test]
async fn the_server_says_its_name_version_and_binary_tensor_data() {
    let got = get(&app(), "/v2").await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json["name"], "simserve");
    assert_eq!(got.json["version"], env!("CARGO_PKG_VERSION"));
    let extensions = got.json["extensions"].as_array().unwrap();
    assert!(extensions.contains(&json!("binary_tensor_data")));
}

#[tokio::test]
async fn health_says_what_healthz_and_readyz_say_and_needs_no_key() {
    let (app, state) = app_and_state(|c| c.api_keys = vec!["k".into()]);
    assert_eq!(
        get(&app, "/v2/health/live").await.json,
        json!({"live": true})
    );
    assert_eq!(
        get(&app, "/v2/health/ready").await.json,
        json!({"ready": true})
    );
    get(&app, "/v2")
        .await
        .assert_error(401, "this route needs an Authorization");
    get(&app, "/v2/models/matrix/ready")
        .await
        .assert_error(401, "this route needs");
    state.start_draining();
    get(&app, "/v2/health/ready")
        .await
        .assert_error(503, "the server is shutting down");
    assert_eq!(get(&app, "/v2/health/live").await.status, 200);
}

#[tokio::test]
async fn a_model_lists_its_inputs_and_outputs_with_variable_dimensions() {
    let app = app();
    for model in ["pairwise", "matrix", "user-item"] {
        for path in [
            format!("/v2/models/{model}"),
            format!("/v2/models/{model}/versions/1"),
        ] {
            let got = get(&app, &path).await;
            assert_eq!(got.status, 200, "{}", got.json);
            assert_eq!(got.json["name"], model);
            assert_eq!(got.json["versions"], json!(["1"]));
            assert!(got.json["inputs"].as_array().unwrap().len() >= 2);
        }
        let ready = get(&app, &format!("/v2/models/{model}/versions/1/ready")).await;
        assert_eq!(ready.json, json!({"name": model, "ready": true}));
    }
    let matrix = get(&app, "/v2/models/matrix").await;
    assert_eq!(
        matrix.json["inputs"][0],
        json!({"name": "a", "datatype": "FP32", "shape": [-1, -1]})
    );
    get(&app, "/v2/models/nope")
        .await
        .assert_error(404, "there is no model of that name");
    get(&app, "/v2/models/matrix/versions/2")
        .await
        .assert_error(404, "the model matrix has no version");
    get(&app, "/v2/models/nope/ready")
        .await
        .assert_error(404, "there is no model");
    get(&app, "/v2/nothing")
        .await
        .assert_error(404, "no resource at this path");
    let post = send(
        &app,
        Request::post("/v2/models/matrix")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    post.assert_error(405, "this method is not allowed");
}

#[tokio::test]
async fn pairwise_in_json_and_in_binary_equals_the_native_route() {
    let app = app();
    let (a, b) = (rows(5, 3, 1), rows(5, 3, 2));
    let native = app
        .post(
            "/similarity/pairwise",
            &json!({"a": nested(&a, 3), "b": nested(&b, 3), "metric": "euclidean"}),
        )
        .await;
    let (_, want) = floats(&native.ok()["scores"]);

    let body = json!({"id": "r-1", "parameters": {"metric": "euclidean"}, "inputs": [
        input("a", &[5, 3], "FP32", json!(a)), input("b", &[5, 3], "FP32", nested(&b, 3))]});
    let got = infer(&app, "pairwise", &body, &[]).await;
    assert_eq!(got.status, 200, "{}", got.json);
    assert_eq!(got.json["id"], "r-1");
    assert_eq!(got.json["model_name"], "pairwise");
    assert_eq!(got.json["parameters"]["metric"], "euclidean");
    assert_eq!(got.floats("scores"), (vec![5], want.clone()));

    let mut binary = le_f32(&a);
    binary.extend(le_f32(&b));
    let body = json!({"parameters": {"metric": "euclidean", "binary_data_output": true}, "inputs": [
        binary_input("a", &[5, 3], "FP32", 60), binary_input("b", &[5, 3], "FP32", 60)]});
    let got = infer(&app, "pairwise", &body, &binary).await;
    assert_eq!(got.status, 200, "{}", got.json);
    assert_eq!(got.output("scores")["parameters"]["binary_data_size"], 20);
    assert_eq!(got.floats("scores"), (vec![5], want));

    let pairs: Vec<f32> = a
        .chunks(3)
        .zip(b.chunks(3))
        .flat_map(|(x, y)| x.iter().chain(y).copied())
        .collect();
    let body = json!({"inputs": [binary_input("pairs", &[5, 2, 3], "FP32", 120)],
                      "parameters": {"metric": "euclidean"}});
    let got = infer(&app, "pairwise", &body, &le_f32(&pairs)).await;
    assert_eq!(got.floats("scores").1, floats(&native.json["scores"]).1);
}

#[tokio::test]
async fn a_large_json_request_is_answered_as_the_native_route_answers_it() {
    // Two inputs of over 1 MiB of JSON each, one flat and one nested (their data arrays cut
    // out before serde reads the request, and read together on the compute threads), and a
    // 400 × 400 matrix of JSON numbers written in pieces.
    let app = app();
    let (a, b) = (rows(400, 512, 3), rows(400, 512, 4));
    let native = app
        .post(
            "/similarity/matrix",
            &json!({"a": nested(&a, 512), "b": nested(&b, 512)}),
        )
        .await;
    let want = floats(&native.ok()["matrix"]);
    let (a, b) = (json!(a), nested(&b, 512));
    assert!(a.to_string().len() > 1 << 20 && b.to_string().len() > 1 << 20);
    let body = json!({"inputs": [
        input("a", &[400, 512], "FP32", a), input("b", &[400, 512], "FP32", b)]});
    let got = infer(&app, "matrix", &body, &[]).await;
    assert_eq!(got.status, 200, "{}", got.json);
    assert_eq!(got.floats("matrix"), want);
}

#[tokio::test]
async fn a_matrix_in_binary_equals_the_native_route_dense_and_top_k() {
    let app = app();
    let (a, b) = (rows(6, 4, 3), rows(4, 4, 4));
    let mut binary = le_f32(&a);
    binary.extend(le_f32(&b));
    let inputs = json!([
        binary_input("a", &[6, 4], "FP32", 96),
        binary_input("b", &[4, 4], "FP32", 64)
    ]);

    let native = app
        .post(
            "/similarity/matrix",
            &json!({"a": nested(&a, 4), "b": nested(&b, 4)}),
        )
        .await;
    let got = infer(
        &app,
        "matrix",
        &json!({"inputs": inputs, "parameters": {"binary_data_output": true}}),
        &binary,
    )
    .await;
    assert_eq!(got.floats("matrix"), floats(&native.ok()["matrix"]));

    let native = app
        .post(
            "/similarity/matrix",
            &json!({"a": nested(&a, 4), "b": nested(&b, 4), "top_k": 2}),
        )
        .await;
    let body = json!({"inputs": inputs, "parameters": {"top_k": 2},
        "outputs": [{"name": "scores", "parameters": {"binary_data": true}}, {"name": "indices"}]});
    let got = infer(&app, "matrix", &body, &binary).await;
    assert_eq!(got.status, 200, "{}", got.json);
    let outputs: Vec<&str> = got.json["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        outputs,
        ["scores", "indices"],
        "only what was asked for, in that order"
    );
    assert_eq!(got.floats("scores"), floats(&native.ok()["scores"]));
    let want: Vec<i64> = index_rows(&native.json["indices"])
        .concat()
        .iter()
        .map(|&i| i as i64)
        .collect();
    assert_eq!(got.ints("indices"), (vec![6, 2], want));
}

#[tokio::test]
async fn binary_data_arriving_in_frames_is_answered_as_when_whole_with_or_without_a_length() {
    let (app, state) = app_and_state(|_| {});
    let (a, b) = (rows(6, 4, 3), rows(4, 4, 4));
    let mut binary = le_f32(&a);
    binary.extend(le_f32(&b));
    let good = json!([
        binary_input("a", &[6, 4], "FP32", 96),
        binary_input("b", &[4, 4], "FP32", 64)
    ]);
    let misfit = json!([
        binary_input("a", &[6, 4], "FP32", 92),
        binary_input("b", &[4, 4], "FP32", 68)
    ]);
    let long = json!([
        binary_input("a", &[6, 4], "FP32", 96),
        binary_input("b", &[4, 4], "FP32", 72)
    ]);
    let short = json!([binary_input("a", &[6, 4], "FP32", 96)]);
    let native = app
        .post(
            "/similarity/matrix",
            &json!({"a": nested(&a, 4), "b": nested(&b, 4)}),
        )
        .await;
    for (inputs, status, want) in [
        (good, 200, ""),
        (
            misfit,
            422,
            "a: binary_data_size is 92 bytes, shape [6, 4] of FP32 needs 96",
        ),
        (
            long,
            400,
            "b: binary_data_size of 72 bytes runs past the end of the body (64",
        ),
        (short, 400, "the body holds 64 bytes after the JSON"),
    ] {
        let json = json!({"inputs": inputs, "parameters": {"binary_data_output": true}});
        let whole = infer(&app, "matrix", &json, &binary).await;
        let mut body = json.to_string().into_bytes();
        let json_length = body.len();
        body.extend_from_slice(&binary);
        for (frame, declared) in [(3, true), (5, true), (7, false), (4096, true)] {
            let frames: Vec<Result<axum::body::Bytes, std::io::Error>> = body
                .chunks(frame)
                .map(|piece| Ok(axum::body::Bytes::copy_from_slice(piece)))
                .collect();
            let mut request = Request::post("/v2/models/matrix/infer")
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header("inference-header-content-length", json_length);
            if declared {
                request = request.header(header::CONTENT_LENGTH, body.len());
            }
            let request = request
                .body(Body::from_stream(futures_util::stream::iter(frames)))
                .unwrap();
            let got = send(&app, request).await;
            let case = format!("{want:?} in frames of {frame}, length declared: {declared}");
            assert_eq!(got.status, status, "{case}: {}", got.json);
            assert_eq!(got.json, whole.json, "{case}");
            assert_eq!(got.binary, whole.binary, "{case}");
            if status == 200 {
                assert_eq!(
                    got.floats("matrix"),
                    floats(&native.ok()["matrix"]),
                    "{case}"
                );
            } else {
                assert!(
                    got.json["error"].as_str().unwrap().starts_with(want),
                    "{case}"
                );
            }
            assert_eq!(state.admission.reserved(), 0, "{case}");
        }
    }
}

#[tokio::test]
async fn ragged_neighbours_are_flat_with_offsets_and_sets_keep_their_axis() {
    let app = app();
    let a = [1.0, 0.0, 0.6, 0.8, 0.0, 1.0, 0.8, 0.6];
    let native = app
        .post(
            "/similarity/matrix",
            &json!({"a": nested(&a, 2), "threshold": 0.7, "exclude_self": true}),
        )
        .await;
    let lists = index_rows(&native.ok()["indices"]);
    let body = json!({"inputs": [input("a", &[4, 2], "FP32", json!(a))],
                      "parameters": {"threshold": 0.7, "exclude_self": true}});
    let got = infer(&app, "matrix", &body, &[]).await;
    let flat: Vec<i64> = lists.concat().iter().map(|&i| i as i64).collect();
    assert_eq!(got.ints("indices"), (vec![flat.len()], flat));
    let mut offsets = vec![0i64];
    for list in &lists {
        offsets.push(offsets.last().unwrap() + list.len() as i64);
    }
    assert_eq!(got.ints("offsets").1, offsets);

    let sets = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, -1.0, -1.0];
    let native = app
        .post(
            "/similarity/matrix",
            &json!({"a": [[[1, 0], [0, 1]], [[1, 1], [-1, -1]]], "top_k": 1}),
        )
        .await;
    let body = json!({"inputs": [input("a", &[2, 2, 2], "FP64", json!(sets))], "parameters": {"top_k": 1}});
    let got = infer(&app, "matrix", &body, &[]).await;
    assert_eq!(got.floats("scores"), floats(&native.ok()["scores"]));
    assert_eq!(got.ints("indices").0, vec![2, 2, 1]);
    assert_eq!(got.ints("offsets").1, vec![0, 1, 2, 3, 4]);
}

#[tokio::test]
async fn user_item_pairs_matrix_and_top_k_with_exclusions_equal_the_native_route() {
    let app = app();
    let users = [0.1, 0.9, 0.8, 0.2, 0.5, 0.5];
    let items = [1.0, 0.0, 0.0, 1.0, 0.7, 0.7];
    let native_body = json!({"users": nested(&users, 2), "items": nested(&items, 2)});
    let mut binary = le_f32(&users);
    binary.extend(le_f32(&items));
    let vectors = [
        binary_input("users", &[3, 2], "FP32", 24),
        binary_input("items", &[3, 2], "FP32", 24),
    ];

    let mut pairs_body = native_body.clone();
    pairs_body["pairs"] = json!([[1, 0], [2, 2]]);
    let native = app.post("/similarity/user-item", &pairs_body).await;
    let mut with_pairs = binary.clone();
    with_pairs.extend(le_i64(&[1, 0, 2, 2]));
    let body =
        json!({"inputs": [vectors[0], vectors[1], binary_input("pairs", &[2, 2], "INT64", 32)]});
    let got = infer(&app, "user-item", &body, &with_pairs).await;
    assert_eq!(got.floats("scores"), floats(&native.ok()["scores"]));

    let native = app.post("/similarity/user-item", &native_body).await;
    let got = infer(&app, "user-item", &json!({"inputs": vectors}), &binary).await;
    assert_eq!(got.floats("matrix"), floats(&native.ok()["matrix"]));

    let mut top_body = native_body.clone();
    top_body["top_k"] = json!(2);
    top_body["exclude"] = json!([[1], [], [0, 2]]);
    let native = app.post("/similarity/user-item", &top_body).await;
    let body = json!({"inputs": [vectors[0], vectors[1],
        input("exclude", &[3], "INT64", json!([1, 0, 2])),
        input("exclude_offsets", &[4], "INT64", json!([0, 1, 1, 3]))],
        "parameters": {"top_k": 2}});
    let got = infer(&app, "user-item", &body, &binary).await;
    assert_eq!(got.status, 200, "{}", got.json);
    let lists = index_rows(&native.ok()["indices"]);
    let flat: Vec<i64> = lists.concat().iter().map(|&i| i as i64).collect();
    assert_eq!(got.ints("indices").1, flat);
    assert_eq!(got.ints("offsets").1, vec![0, 2, 4, 5]);
    let native_scores: Vec<f32> = native.json["scores"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| floats(row).1)
        .collect();
    assert_eq!(got.floats("scores").1, native_scores);
}

#[tokio::test]
async fn half_and_double_precision_inputs_score_as_float32() {
    let app = app();
    let a = [1.0f32, 0.0, 0.6, 0.8];
    let native = app
        .post("/similarity/matrix", &json!({"a": nested(&a, 2)}))
        .await;
    let want = floats(&native.ok()["matrix"]);
    let fp16: Vec<u8> = a
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let bf16: Vec<u8> = a
        .iter()
        .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
        .collect();
    let fp64: Vec<u8> = a.iter().flat_map(|&v| f64::from(v).to_le_bytes()).collect();
    for (datatype, bytes) in [("FP16", fp16), ("BF16", bf16), ("FP64", fp64)] {
        let body = json!({"inputs": [binary_input("a", &[2, 2], datatype, bytes.len())]});
        let got = infer(&app, "matrix", &body, &bytes).await;
        let (shape, values) = got.floats("matrix");
        assert_eq!(shape, want.0, "{datatype}");
        for (g, w) in values.iter().zip(&want.1) {
            assert!((g - w).abs() < 1e-2, "{datatype}: {g} vs {w}");
        }
    }
}

#[tokio::test]
async fn bad_inputs_each_get_the_right_status_and_the_native_text() {
    let app = app();
    let a = input("a", &[2, 2], "FP32", json!([1, 0, 0, 1]));
    for (model, body, binary, status, want) in [
        (
            "matrix",
            json!({"inputs": [input("a", &[2, 2], "INT64", json!([1, 0, 0, 1]))]}),
            vec![],
            422,
            "a: datatype INT64 is not taken; send FP32",
        ),
        (
            "matrix",
            json!({"inputs": [input("a", &[2, 2], "INT32", json!([1, 0, 0, 1]))]}),
            vec![],
            422,
            "a.datatype: \"INT32\" is not taken",
        ),
        (
            "matrix",
            json!({"inputs": [input("a", &[2, 3], "FP32", json!([1, 0, 0, 1]))]}),
            vec![],
            422,
            "a.data: holds 4 values, shape [2, 3] needs 6",
        ),
        (
            "matrix",
            json!({"inputs": [binary_input("a", &[2, 3], "FP32", 16)]}),
            le_f32(&[1.0, 0.0, 0.0, 1.0]),
            422,
            "a: binary_data_size is 16 bytes, shape [2, 3] of FP32 needs 24",
        ),
        (
            "matrix",
            json!({"inputs": [binary_input("a", &[2, 2], "FP32", 20)]}),
            le_f32(&[1.0, 0.0, 0.0, 1.0]),
            400,
            "a: binary_data_size of 20 bytes runs past the end of the body (16 bytes",
        ),
        (
            "matrix",
            json!({"inputs": [binary_input("a", &[2, 2], "FP32", 16)]}),
            le_f32(&[1.0, 0.0, 0.0, 1.0, 5.0]),
            400,
            "the body holds 4 bytes after the JSON",
        ),
        (
            "matrix",
            json!({"inputs": [input("c", &[1], "FP32", json!([1]))]}),
            vec![],
            422,
            "inputs[0].name: the model has no input \"c\"; its inputs are a, b",
        ),
        (
            "matrix",
            json!({"inputs": [a], "parameters": {"k": 1}}),
            vec![],
            422,
            "parameters: the model matrix takes no parameter \"k\"",
        ),
        (
            "matrix",
            json!({"inputs": [a], "parameters": {"top_k": 0}}),
            vec![],
            422,
            "top_k: expected an integer of at least 1, found 0",
        ),
        (
            "matrix",
            json!({"inputs": [a], "outputs": [{"name": "items"}]}),
            vec![],
            422,
            "outputs[0].name: the model has no output \"items\"",
        ),
        (
            "matrix",
            json!({"inputs": [a], "outputs": [{"name": "indices"}]}),
            vec![],
            422,
            "outputs[0]: this request gives matrix, not indices",
        ),
        (
            "matrix",
            json!({"inputs": [a, input("b", &[1, 3], "FP32", json!([1, 2, 3]))]}),
            vec![],
            422,
            "b: vectors have dimension 3, but those of a have dimension 2",
        ),
        (
            "matrix",
            json!({"inputs": [a, input("b", &[1, 2], "FP32", json!([1, 2]))],
            "parameters": {"top_k": 1, "exclude_self": true}}),
            vec![],
            422,
            "exclude_self: applies only when b is omitted",
        ),
        (
            "matrix",
            json!({"inputs": [input("a", &[1, 2], "FP32", json!([1e39, 0]))]}),
            vec![],
            422,
            "a[0][0]: value is NaN, infinite or outside the float32 range",
        ),
        (
            "matrix",
            json!({"inputs": [binary_input("a", &[2, 2], "FP32", 16)]}),
            le_f32(&[1.0, 0.0, f32::NAN, 1.0]),
            422,
            "a[1][0]: value is NaN, infinite or outside the float32 range",
        ),
        (
            "matrix",
            json!({"inputs": [binary_input("a", &[1, 2], "FP64", 16)]}),
            [0.5f64, 1e39]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
            422,
            "a[0][1]: value is NaN, infinite or outside the float32 range",
        ),
        (
            "matrix",
            json!({"inputs": [input("a", &[0, 2], "FP32", json!([]))]}),
            vec![],
            422,
            "a.shape[0]: axis has length 0",
        ),
        ("matrix", json!({"inputs": []}), vec![], 422, "a: missing"),
        (
            "pairwise",
            json!({"inputs": [a]}),
            vec![],
            422,
            "b: missing; give a and b, or pairs",
        ),
        (
            "user-item",
            json!({"inputs": [a]}),
            vec![],
            422,
            "inputs[0].name: the model has no input \"a\"",
        ),
        (
            "user-item",
            json!({"inputs": [input("users", &[1, 2], "FP32", json!([1, 0])),
            input("items", &[1, 2], "FP32", json!([1, 0])), input("pairs", &[1, 2], "INT64", json!([0, 3]))]}),
            vec![],
            422,
            "pairs[0][1]: item index 3 is out of range for 1 items",
        ),
        (
            "user-item",
            json!({"inputs": [input("users", &[1, 2], "FP32", json!([1, 0])),
            input("items", &[1, 2], "FP32", json!([1, 0])), input("pairs", &[1, 2], "INT64", json!([0, -1]))]}),
            vec![],
            422,
            "pairs[0][1]: expected a non-negative integer index, found -1",
        ),
        (
            "user-item",
            json!({"inputs": [input("users", &[1, 2], "FP32", json!([1, 0])),
            input("items", &[1, 2], "FP32", json!([1, 0])), input("exclude", &[1], "INT64", json!([0]))],
            "parameters": {"top_k": 1}}),
            vec![],
            422,
            "exclude_offsets: missing",
        ),
        (
            "user-item",
            json!({"inputs": [input("users", &[2, 2], "FP32", json!([1, 0, 0, 1])),
            input("items", &[3, 2], "FP32", json!([1, 0, 0, 1, 1, 1])),
            input("exclude", &[4], "INT64", json!([0, 1, 2, 9])),
            input("exclude_offsets", &[3], "INT64", json!([0, 1, 4]))],
            "parameters": {"top_k": 1}}),
            vec![],
            422,
            "exclude[3]: item index 9 is out of range for 3 items",
        ),
        (
            "user-item",
            json!({"inputs": [input("users", &[2, 2], "FP32", json!([1, 0, 0, 1])),
            input("items", &[3, 2], "FP32", json!([1, 0, 0, 1, 1, 1])),
            input("exclude", &[2], "INT64", json!([0, 1])),
            input("exclude_offsets", &[4], "INT64", json!([0, 1, 2, 2]))],
            "parameters": {"top_k": 1}}),
            vec![],
            422,
            "exclude_offsets: has 4 entries, expected one per user and one more (3)",
        ),
        (
            "user-item",
            json!({"inputs": [input("users", &[2, 2], "FP32", json!([1, 0, 0, 1])),
            input("items", &[3, 2], "FP32", json!([1, 0, 0, 1, 1, 1])),
            input("exclude", &[1], "INT64", json!([0])),
            input("exclude_offsets", &[3], "INT64", json!([0, 1, 1]))]}),
            vec![],
            422,
            "exclude: applies only with top_k or threshold",
        ),
        (
            "user-item",
            json!({"inputs": [input("users", &[2, 2], "FP32", json!([1, 0, 0, 1])),
            input("items", &[3, 2], "FP32", json!([1, 0, 0, 1, 1, 1])),
            input("exclude", &[2, 1], "INT64", json!([0, 1])),
            input("exclude_offsets", &[3], "INT64", json!([0, 1, 2]))],
            "parameters": {"top_k": 1}}),
            vec![],
            422,
            "exclude: expected a tensor of rank 1, found rank 2",
        ),
        (
            "nope",
            json!({"inputs": []}),
            vec![],
            404,
            "there is no model of that name",
        ),
    ] {
        let got = infer(&app, model, &body, &binary).await;
        assert_eq!(got.status.as_u16(), status, "{body}: {}", got.json);
        got.assert_error(status, want);
        // Without a declared length the body is read whole, then decoded: the same answer.
        let path = format!("/v2/models/{model}/infer");
        let mut request = infer_request(&path, &body, &binary);
        request.headers_mut().remove(header::CONTENT_LENGTH);
        let whole = send(&app, request).await;
        assert_eq!(whole.status, got.status, "{body}: {}", whole.json);
        assert_eq!(whole.json, got.json, "{body}");
    }

    // The JSON's length past the body, and a body that is not JSON at all.
    let head = json!({"inputs": [a]}).to_string();
    let request = Request::post("/v2/models/matrix/infer")
        .header("inference-header-content-length", head.len() + 10)
        .body(Body::from(head.clone()))
        .unwrap();
    send(&app, request).await.assert_error(
        400,
        &format!(
            "Inference-Header-Content-Length: {} is past the end of the body of {} bytes",
            head.len() + 10,
            head.len()
        ),
    );
    let request = Request::post("/v2/models/matrix/infer")
        .header("inference-header-content-length", "x")
        .body(Body::from(head))
        .unwrap();
    send(&app, request)
        .await
        .assert_error(400, "Inference-Header-Content-Length: expected");
    let request = Request::post("/v2/models/matrix/infer")
        .body(Body::from("[1]"))
        .unwrap();
    send(&app, request)
        .await
        .assert_error(400, "the inference request must be a JSON object");
    let request = Request::post("/v2/models/matrix/infer")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    send(&app, request)
        .await
        .assert_error(415, "an inference request is sent with Content-Type");
}

#[tokio::test]
async fn tritonclients_timeout_bounds_the_computation_and_its_priority_is_taken() {
    let app = app();
    // Taken as tritonclient sends them, with nothing else changed: 0 is no timeout.
    let small = json!({"inputs": [input("a", &[2, 2], "FP32", json!([1, 0, 0, 1]))],
                       "parameters": {"timeout": 0, "priority": 3}});
    let got = infer(&app, "matrix", &small, &[]).await;
    assert_eq!(got.status, 200, "{}", got.json);
    // A millisecond, for 2.3 billion steps of pair-by-pair scoring.
    let (n, dim) = (3000, 256);
    let head = json!({"inputs": [binary_input("a", &[n, dim], "FP32", n * dim * 4)],
                      "parameters": {"timeout": 1000, "metric": "manhattan", "top_k": 1}});
    let got = infer(&app, "matrix", &head, &le_f32(&rows(n, dim, 3))).await;
    got.assert_error(
        503,
        "the request did not finish within 1ms; its computation was stopped",
    );
    for (parameters, want) in [
        (
            json!({"timeout": -1}),
            "timeout: expected a non-negative integer, found -1",
        ),
        (
            json!({"priority": "high"}),
            "priority: expected a non-negative integer, found a string",
        ),
    ] {
        let mut body = small.clone();
        body["parameters"] = parameters;
        infer(&app, "matrix", &body, &[])
            .await
            .assert_error(422, want);
    }
}

#[tokio::test]
async fn admission_compression_and_metrics_apply_as_on_the_native_routes() {
    let (app, state) = app_and_state(one_permit(0));
    let body = json!({"inputs": [input("a", &[2, 2], "FP32", json!([1, 0, 0, 1]))]});
    let busy = take_a_permit(&state).await;
    let got = infer(&app, "matrix", &body, &[]).await;
    got.assert_error(503, "every compute slot is busy");
    assert_eq!(got.headers[header::RETRY_AFTER], "1");
    drop(busy);

    // A gzip body with binary data; a gzip answer with binary data.
    let a = rows(40, 8, 5);
    let head = json!({"inputs": [binary_input("a", &[40, 8], "FP32", 1280)],
                      "parameters": {"binary_data_output": true}})
    .to_string();
    let mut plain = head.clone().into_bytes();
    plain.extend(le_f32(&a));
    let request = Request::post("/v2/models/matrix/versions/1/infer")
        .header(header::CONTENT_ENCODING, "gzip")
        .header(header::ACCEPT_ENCODING, "gzip")
        .header("inference-header-content-length", head.len())
        .body(Body::from(gzip(&plain)))
        .unwrap();
    let response = app.raw(request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
    let length: usize = response.headers()["inference-header-content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let packed = response.into_body().collect().await.unwrap().to_bytes();
    let mut inflated = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&packed[..]),
        &mut inflated,
    )
    .unwrap();
    let head: Value = serde_json::from_slice(&inflated[..length]).unwrap();
    assert_eq!(head["outputs"][0]["shape"], json!([40, 40]));
    assert_eq!(inflated.len() - length, 40 * 40 * 4);

    let metrics = app.metrics().await;
    for sample in [
        "simserve_http_requests_total{method=\"POST\",route=\"/v2/models/{model}/infer\",status=\"503\"}",
        "simserve_compute_duration_seconds_count{route=\"/v2/models/{model}/versions/{version}/infer\"}",
    ] {
        assert_eq!(metric_value(&metrics, sample), 1.0, "{sample}");
    }
}

#[tokio::test]
async fn a_request_parameter_makes_an_input_rows_of_a_server_side_table() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tables/good");
    let (app, state) = app_and_state(|c| c.tables = Some(dir));
    state.tables.load().unwrap();
    let native = app
        .post(
            "/similarity/user-item",
            &json!({"users": {"table": "users", "rows": [4, 0]},
            "items": {"table": "items"}, "top_k": 3}),
        )
        .await;
    let body = json!({"inputs": [input("users", &[2], "INT64", json!([4, 0]))],
        "parameters": {"users_table": "users", "items_table": "items", "top_k": 3}});
    let got = infer(&app, "user-item", &body, &[]).await;
    assert_eq!(got.status, 200, "{}", got.json);
    let flat: Vec<i64> = index_rows(&native.ok()["indices"])
        .concat()
        .iter()
        .map(|&i| i as i64)
        .collect();
    assert_eq!(got.ints("indices").1, flat);
    assert_eq!(
        got.json["parameters"]["table.items"],
        native.json["tables"]["items"]
    );
    let ids: Vec<Value> = native.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().clone())
        .collect();
    assert_eq!(got.output("ids")["datatype"], "BYTES");
    assert_eq!(got.output("ids")["data"], json!(ids));

    // The same ids in binary: a 4-byte length and the bytes, per id.
    let mut binary = body.clone();
    binary["outputs"] = json!([{"name": "ids", "parameters": {"binary_data": true}}]);
    let got = infer(&app, "user-item", &binary, &[]).await;
    let mut bytes = got.bytes_of("ids");
    let mut listed = Vec::new();
    while !bytes.is_empty() {
        let length = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
        listed.push(json!(std::str::from_utf8(&bytes[4..4 + length]).unwrap()));
        bytes = &bytes[4 + length..];
    }
    assert_eq!(listed, ids);
    let no_ids = json!({"inputs": [input("a", &[2, 2], "FP32", json!([1, 0, 0, 1]))],
        "parameters": {"top_k": 1}, "outputs": [{"name": "ids"}]});
    // Refused before anything is computed: rows sent as a tensor have no ids.
    infer(&app, "matrix", &no_ids, &[]).await.assert_error(
        422,
        "outputs[0]: this request gives indices, scores, offsets, not ids",
    );

    let native = app
        .post(
            "/similarity/matrix",
            &json!({"a": {"table": "users", "rows": [1]},
            "b": {"table": "items", "ids": ["sku-003", "sku-001"]}}),
        )
        .await;
    let ids = json!({"inputs": [input("b", &[2], "BYTES", json!(["sku-003", "sku-001"])),
                                input("a", &[1], "INT64", json!([1]))],
                     "parameters": {"a_table": "users", "b_table": "items"}});
    let got = infer(&app, "matrix", &ids, &[]).await;
    assert_eq!(got.floats("matrix"), floats(&native.ok()["matrix"]));
    let wrong = json!({"inputs": [input("users", &[1], "INT64", json!([0])), input("items", &[1, 2], "FP32", json!([1, 0]))],
                       "parameters": {"users_table": "nope"}});
    infer(&app, "user-item", &wrong, &[])
        .await
        .assert_error(422, "users_table: there is no table \"nope\"");
    // Errors name the parameter and the input's data, as the client sent them.
    let rows = state.tables.catalog().get("users").unwrap().rows();
    for (inputs, error) in [
        (
            json!([input("users", &[2], "INT64", json!([0, rows]))]),
            format!("users.data[1]: row {rows} is out of range for table \"users\" of {rows} rows"),
        ),
        (
            json!([input("users", &[1], "BYTES", json!(["u1"]))]),
            "users.data: table \"users\" has no ids (they come from users.ids.txt)".to_owned(),
        ),
        (
            json!([
                input("users", &[1], "INT64", json!([0])),
                input("items", &[2], "BYTES", json!(["sku-001", "nope"]))
            ]),
            "items.data[1]: table \"items\" has no row with the id \"nope\"".to_owned(),
        ),
    ] {
        let body = json!({"inputs": inputs,
            "parameters": {"users_table": "users", "items_table": "items", "top_k": 1}});
        infer(&app, "user-item", &body, &[])
            .await
            .assert_error(422, &error);
    }
}
