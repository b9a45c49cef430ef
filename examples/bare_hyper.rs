//! The floor of simserve's HTTP stack: hyper on tokio, serving connections as simserve does
//! (one HTTP/1 connection a task, `TCP_NODELAY`) with nothing else: no timeouts, checks,
//! limits, metrics, middleware or logs.
//!
//! Usage: `bare_hyper PORT fixed ANSWER_FILE [per-core]` answers every POST with the file's
//! bytes after reading its body whole (no parsing: what the stack costs by itself; 400 if
//! the body cannot be read);
//! `bare_hyper PORT read [per-core]` reads the tensors `a` and `b` of a pairwise body with
//! simserve's tensor reader (as the service reads a small body's), scores them (cosine) with
//! simserve's kernel and answers the scores as JSON through serde (the text simserve's own
//! writer gives for them): what the stack costs with simserve's work and none of the rest. A GET
//! gets 200 `{}` (readiness).
//!
//! It runs on tokio's multi-threaded runtime, as simserve does, or with `per-core` on one
//! single-threaded runtime per CPU, each accepting on its own listening socket
//! (`SO_REUSEPORT`), as nginx's workers do. `bench/small_bound.py` serves its small requests
//! from all four settings, beside simserve, the Python peer and nginx.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use simserve::compute::{self, Cancel, Metric};
use simserve::tensor::text;

/// The tensor that follows `"name":` in `body`, read with simserve's reader as the service
/// reads a small body's tensors (at its `[`, on this thread, no span found first).
fn tensor(body: &[u8], name: &str) -> Option<ndarray::Array2<f32>> {
    let key = format!("\"{name}\"");
    let after = memchr::memmem::find(body, key.as_bytes())? + key.len();
    let start = after + memchr::memchr(b'[', &body[after..])?;
    text::read_at(body, start)?.0.into_matrix()
}

/// A pairwise answer with simserve's fields, `f32` scores at their shortest as simserve writes
/// them.
#[derive(Serialize)]
struct Answer {
    metric: &'static str,
    shape: [usize; 1],
    scores: Vec<f32>,
}

/// The pairwise cosine answer to `body`, or `None` if it holds no `a` and `b` of equal shape.
fn scores(body: &[u8]) -> Option<Vec<u8>> {
    let (a, b) = (tensor(body, "a")?, tensor(body, "b")?);
    let scores = compute::pairwise(a.view(), b.view(), Metric::Cosine, &Cancel::new()).ok()?;
    let scores = scores.to_vec();
    let answer = Answer {
        metric: "cosine",
        shape: [scores.len()],
        scores,
    };
    serde_json::to_vec(&answer).ok()
}

async fn answer(
    request: Request<hyper::body::Incoming>,
    fixed: Option<Arc<Bytes>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let probe = request.method() == hyper::Method::GET;
    let body = request.into_body().collect().await.map(|c| c.to_bytes());
    let (status, bytes) = match (&fixed, body) {
        (_, Err(_)) => (400, Bytes::from_static(b"{}")),
        _ if probe => (200, Bytes::from_static(b"{}")),
        (Some(answer), Ok(_)) => (200, Bytes::clone(answer)),
        (None, Ok(body)) => match scores(&body) {
            Some(answer) => (200, Bytes::from(answer)),
            None => (422, Bytes::from_static(b"{}")),
        },
    };
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(bytes))
        .unwrap();
    Ok(response)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: bare_hyper PORT (fixed ANSWER_FILE | read) [per-core]";
    let port: u16 = args.next().and_then(|p| p.parse().ok()).expect(usage);
    let fixed = match args.next().as_deref() {
        Some("fixed") => Some(Arc::new(Bytes::from(
            std::fs::read(args.next().expect(usage)).expect("a readable answer file"),
        ))),
        Some("read") => None,
        _ => panic!("{usage}"),
    };
    // A thread that panics (a port taken, a runtime not built) ends the whole process, so no
    // setting serves on fewer threads than it says.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        std::process::exit(101);
    }));
    if args.next().as_deref() == Some("per-core") {
        // A single-threaded runtime per CPU, each accepting on its own listening socket
        // (SO_REUSEPORT), as nginx's workers do: no task ever moves between threads.
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads: Vec<_> = (0..cpus)
            .map(|_| {
                let fixed = fixed.clone();
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime");
                    runtime.block_on(async move {
                        let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
                        socket.set_reuseport(true).expect("SO_REUSEPORT");
                        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
                        socket
                            .bind(([127, 0, 0, 1], port).into())
                            .expect("a free port");
                        serve(socket.listen(1024).expect("listening"), fixed).await;
                    });
                })
            })
            .collect();
        for thread in threads {
            let _ = thread.join();
        }
    } else {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("a free port");
            serve(listener, fixed).await;
        });
    }
}

async fn serve(listener: tokio::net::TcpListener, fixed: Option<Arc<Bytes>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors, say: wait rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let fixed = fixed.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(request, fixed.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
