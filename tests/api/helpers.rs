//! Test harness: drives the router without a socket and checks every response against the
//! OpenAPI document (route, method, status, content type and body schema).

use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::write::GzEncoder;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use simserve::Config;
use simserve::app;
use simserve::state::AppState;
use tower::ServiceExt;

/// The smallest pairwise request: one pair of orthogonal vectors, scored `[0.0]`.
pub const SMALL_PAIRWISE_BODY: &str = r#"{"a": [[1.0, 0.0]], "b": [[0.0, 1.0]]}"#;

/// [`SMALL_PAIRWISE_BODY`] as a JSON value.
pub fn small_body() -> Value {
    serde_json::from_str(SMALL_PAIRWISE_BODY).unwrap()
}

/// The app under test.
pub struct TestApp {
    router: Router,
}

/// What a request got back.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub content_type: String,
    pub headers: axum::http::HeaderMap,
    pub json: Value,
}

impl TestResponse {
    /// The problem+json `detail`.
    pub fn detail(&self) -> &str {
        self.json["detail"].as_str().unwrap_or_default()
    }

    /// Asserts a problem+json answer with `status` whose detail starts with `prefix`.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, prefix: &str) {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.json);
        assert_eq!(self.content_type, "application/problem+json");
        assert_eq!(self.json["status"], status);
        assert!(
            self.detail().starts_with(prefix),
            "detail {:?} does not start with {prefix:?}",
            self.detail()
        );
    }

    /// Asserts a 200 and returns the body.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.json);
        &self.json
    }
}

/// The app with default configuration.
pub fn app() -> TestApp {
    app_with(|_| {})
}

/// The app with configuration changed by `change`.
pub fn app_with(change: impl FnOnce(&mut Config)) -> TestApp {
    app_and_state(change).0
}

/// The app with configuration changed by `change`, and its shared state.
pub fn app_and_state(change: impl FnOnce(&mut Config)) -> (TestApp, AppState) {
    routes_and_state(app::routes(), change)
}

/// The app serving `routes` (which may add routes to the real ones) behind the real layers.
pub fn app_with_routes(routes: axum::Router<AppState>) -> TestApp {
    routes_and_state(routes, |_| {}).0
}

/// `routes` behind the real layers, with configuration changed by `change`, and the shared
/// state.
pub fn routes_and_state(
    routes: axum::Router<AppState>,
    change: impl FnOnce(&mut Config),
) -> (TestApp, AppState) {
    let mut config = Config::with_addr("127.0.0.1:0".parse().unwrap());
    change(&mut config);
    let state = AppState::new(&config);
    let router = app::with_layers(routes, state.clone(), &config);
    (TestApp { router }, state)
}

impl TestApp {
    /// POSTs `body` as JSON.
    pub async fn post(&self, path: &str, body: &Value) -> TestResponse {
        self.post_raw(
            path,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
        .await
    }

    /// POSTs raw bytes with an optional content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> TestResponse {
        let mut request = Request::builder().method(Method::POST).uri(path);
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        self.send(request.body(Body::from(body)).unwrap()).await
    }

    /// Sends a request without a body.
    pub async fn request(&self, method: Method, path: &str) -> TestResponse {
        let request = Request::builder().method(method).uri(path);
        self.send(request.body(Body::empty()).unwrap()).await
    }

    /// The OpenMetrics text that `GET /metrics` answers.
    pub async fn metrics(&self) -> String {
        let got = self.request(Method::GET, "/metrics").await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.json);
        assert!(
            got.content_type.starts_with("application/openmetrics-text"),
            "{}",
            got.content_type
        );
        got.json.as_str().unwrap().to_owned()
    }

    /// The value of the sample `name` on `/metrics` (see [`metric_value`]).
    pub async fn metric(&self, name: &str) -> f64 {
        metric_value(&self.metrics().await, name)
    }

    /// Sends `request` and checks the response against the OpenAPI document.
    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let response = self.send_unchecked(request).await;
        check_against_spec(
            &method,
            &path,
            response.status,
            &response.content_type,
            &response.json,
        );
        response
    }

    /// The router's raw response, body unread (for compressed bodies).
    pub async fn raw(&self, request: Request<Body>) -> axum::response::Response {
        self.router
            .clone()
            .oneshot(with_host(request))
            .await
            .unwrap()
    }

    /// Sends `request` without checking the response against the OpenAPI document (for
    /// routes that only tests add).
    pub async fn send_unchecked(&self, request: Request<Body>) -> TestResponse {
        let response = self
            .router
            .clone()
            .oneshot(with_host(request))
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = if content_type.contains("json") {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("body is not JSON: {e}"))
        } else if content_type.contains("yaml") {
            serde_norway::from_slice(&bytes).unwrap_or_else(|e| panic!("body is not YAML: {e}"))
        } else {
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        };
        TestResponse {
            status,
            content_type,
            headers,
            json,
        }
    }
}

/// The OpenAPI document as JSON.
pub fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        let text = include_str!("../../openapi.yaml");
        serde_norway::from_str(text).expect("openapi.yaml parses")
    })
}

/// Follows a local `$ref` such as `#/components/responses/X`.
fn resolve<'a>(spec: &'a Value, node: &'a Value) -> &'a Value {
    match node.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.trim_start_matches('#');
            spec.pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {reference}"))
        }
        None => node,
    }
}

/// Panics unless the response is documented and its body validates against its schema.
#[track_caller]
pub fn check_against_spec(
    method: &Method,
    path: &str,
    status: StatusCode,
    content_type: &str,
    body: &Value,
) {
    let spec = spec();
    // A path of the spec, exactly or through its `{parameter}` segments.
    let template = spec["paths"]
        .as_object()
        .unwrap()
        .iter()
        .find_map(|(template, item)| {
            let (want, got): (Vec<&str>, Vec<&str>) =
                (template.split('/').collect(), path.split('/').collect());
            let fits = want.len() == got.len()
                && want.iter().zip(&got).all(|(w, g)| {
                    w == g || (w.starts_with('{') && spec["paths"].get(path).is_none())
                });
            fits.then_some(item)
        });
    let documented = match spec["paths"].get(path).or(template) {
        Some(item) => {
            let operation = item.get(method.as_str().to_lowercase());
            match operation {
                Some(operation) => operation["responses"].get(status.as_str()),
                None => item
                    .as_object()
                    .and_then(|ops| ops.values().find_map(|op| op["responses"].get("405"))),
            }
        }
        None => Some(&spec["components"]["responses"]["NotFound"]),
    };
    let documented = documented
        .map(|r| resolve(spec, r))
        .unwrap_or_else(|| panic!("{method} {path} -> {status} is not documented"));
    let media = content_type.split(';').next().unwrap_or_default().trim();
    let schema = documented["content"]
        .get(media)
        .unwrap_or_else(|| panic!("{method} {path} -> {status} {media} is not documented"))
        .get("schema")
        .unwrap_or_else(|| panic!("{method} {path} -> {status} has no schema"));
    let mut root = schema.clone();
    if let Some(object) = root.as_object_mut() {
        object.insert("components".into(), spec["components"].clone());
    }
    let validator = jsonschema::draft202012::new(&root).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} -> {status}: body does not match openapi.yaml: {errors:?}\nbody: {body}"
    );
}

/// Base64 tensor object of little-endian float32 values.
pub fn b64_f32(shape: &[usize], values: &[f32]) -> Value {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    json!({"dtype": "float32", "shape": shape, "data": STANDARD.encode(bytes)})
}

/// A float tensor of a response (nested arrays or a base64 object) as (shape, values).
pub fn floats(value: &Value) -> (Vec<usize>, Vec<f32>) {
    if let Some(object) = value.as_object() {
        assert_eq!(object["dtype"], "float32");
        let shape: Vec<usize> = object["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let bytes = STANDARD.decode(object["data"].as_str().unwrap()).unwrap();
        let values = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        return (shape, values);
    }
    let mut shape = Vec::new();
    let mut level = value;
    while let Some(items) = level.as_array() {
        shape.push(items.len());
        match items.first() {
            Some(first) => level = first,
            None => break,
        }
    }
    let mut values = Vec::new();
    flatten(value, &mut values);
    (shape, values)
}

fn flatten(value: &Value, out: &mut Vec<f32>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        Value::Number(n) => out.push(n.as_f64().unwrap() as f32),
        other => panic!("not a float tensor element: {other}"),
    }
}

/// Rows of a nested JSON array of integers.
pub fn index_rows(value: &Value) -> Vec<Vec<usize>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect()
        })
        .collect()
}

/// Asserts `got` and `want` agree elementwise within `tol`.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "lengths differ: {got:?} vs {want:?}");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (f64::from(g) - w).abs() <= tol,
            "element {i}: got {g}, want {w} (tolerance {tol})"
        );
    }
}

/// The value of the sample `name` in the OpenMetrics `text` of `/metrics`: `name` is the
/// metric with its labels as printed, e.g. `simserve_queue_depth` or
/// `simserve_rejections_total{reason="deadline"}`. Panics if there is no such sample.
#[track_caller]
pub fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// `bytes` gzipped.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A gzip bomb: 100 MB of JSON whitespace after `{` (well-formed if it ever ended), gzipped
/// to about 100 KB.
pub fn gzip_bomb() -> Vec<u8> {
    let mut inflated = vec![b' '; 100 << 20];
    inflated[0] = b'{';
    gzip(&inflated)
}

/// Waits until `done()` holds, checking every millisecond; panics after `limit`, saying
/// what was awaited.
pub async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(limit, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "not within {limit:?}: {what}");
}

/// A `simserve` process started by a test, killed when dropped (if it is still running).
pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the `simserve` binary on a free loopback port with JSON logs and `args`; returns
/// the process, the address it logged, and the rest of its log lines.
pub fn spawn_binary(
    args: &[&str],
) -> (
    Process,
    std::net::SocketAddr,
    std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_simserve"))
        .args(["--addr", "127.0.0.1:0", "--log-format", "json"])
        .args(args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the server logs its address").unwrap();
        let log: Value = serde_json::from_str(&line).unwrap_or_default();
        if log["fields"]["message"] == "simserve listening" {
            break log["fields"]["addr"].as_str().unwrap().parse().unwrap();
        }
    };
    (Process(child), addr, lines)
}

/// A configuration change: one compute permit and a wait queue of `max_queue`.
pub fn one_permit(max_queue: usize) -> impl FnOnce(&mut Config) {
    move |c| {
        c.compute_permits = 1;
        c.max_queue = max_queue;
    }
}

/// Takes a compute permit of the app whose state is `state`, as an admitted request would,
/// and holds it until the returned guard is dropped.
pub async fn take_a_permit(state: &AppState) -> simserve::admission::Admitted {
    state
        .admission
        .enter(None)
        .unwrap()
        .admit(None)
        .await
        .unwrap()
}

/// `request` with the `Host` header every HTTP/1.1 client sends (`simserve`), unless it has
/// one or is an HTTP/1.0 request, as a request over a socket would arrive.
pub fn with_host(mut request: Request<Body>) -> Request<Body> {
    if request.version() >= axum::http::Version::HTTP_11
        && !request.headers().contains_key(header::HOST)
    {
        request
            .headers_mut()
            .insert(header::HOST, header::HeaderValue::from_static("simserve"));
    }
    request
}
