//! Drives simserve's real router in process: one POST per input, and the oracle every target
//! shares — no panic, no 5xx, and every answer is JSON or problem+json.

use std::sync::LazyLock;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, header};
use http_body_util::BodyExt;
use simserve::Config;
use tower::ServiceExt;

/// Small limits, so each input runs fast; they are limits like any other.
static ROUTER: LazyLock<Router> = LazyLock::new(|| {
    let mut config = Config::with_addr("127.0.0.1:0".parse().expect("an address"));
    config.max_body_bytes = 1 << 16;
    config.max_output_elements = 1 << 14;
    config.max_queue = 1;
    simserve::router(&config)
});

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime")
});

/// POSTs `body` to `path` as JSON and checks the answer.
#[allow(dead_code)]
pub fn post(path: &str, body: Vec<u8>) {
    RUNTIME.block_on(async {
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .expect("a request");
        let response = ROUTER.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        assert!(
            !status.is_server_error(),
            "{status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        assert!(
            content_type == "application/json" || content_type == "application/problem+json",
            "{status} {content_type}"
        );
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("the answer is JSON");
        if status.is_client_error() {
            assert!(json["detail"].is_string(), "{json}");
        }
    });
}

/// POSTs `body` to the inference route `path` (with `json_length` as its
/// `Inference-Header-Content-Length`) and checks the answer: no 5xx; an `{"error"}` object,
/// a JSON answer, or a JSON answer followed by exactly the binary data its outputs' sizes
/// add up to.
#[allow(dead_code)]
pub fn post_v2(path: &str, json_length: Option<usize>, body: Vec<u8>, frame: Option<usize>) {
    RUNTIME.block_on(async {
        let mut request =
            Request::post(path).header(header::CONTENT_TYPE, "application/octet-stream");
        if let Some(length) = json_length {
            request = request.header("inference-header-content-length", length);
        }
        // With a frame size, the body declares its length and arrives in frames of that
        // size, as from a socket (decoded as it arrives); without one it comes whole and
        // undeclared (read into one buffer).
        let body = match frame {
            None => Body::from(body),
            Some(frame) => {
                request = request.header(header::CONTENT_LENGTH, body.len());
                let frames: Vec<Result<Bytes, std::io::Error>> = body
                    .chunks(frame.max(1))
                    .map(|piece| Ok(Bytes::copy_from_slice(piece)))
                    .collect();
                Body::from_stream(futures_util::stream::iter(frames))
            }
        };
        let request = request.body(body).expect("a request");
        let response = ROUTER.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        assert!(
            !status.is_server_error(),
            "{status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let length = headers.get("inference-header-content-length").map(|v| {
            v.to_str()
                .expect("ASCII")
                .parse::<usize>()
                .expect("a length")
        });
        let (json, binary) = match length {
            Some(length) => {
                assert_eq!(content_type, "application/octet-stream");
                bytes.split_at(length)
            }
            None => {
                assert_eq!(content_type, "application/json", "{status}");
                (&bytes[..], &[][..])
            }
        };
        let json: serde_json::Value = serde_json::from_slice(json).expect("the answer is JSON");
        if status.is_client_error() {
            assert!(json["error"].is_string(), "{json}");
            return;
        }
        let sizes: u64 = json["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .filter_map(|o| o["parameters"]["binary_data_size"].as_u64())
            .sum();
        assert_eq!(sizes, binary.len() as u64, "{json}");
    });
}
