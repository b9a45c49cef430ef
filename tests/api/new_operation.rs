//! A new similarity operation is one file and one router line: this one, defined here and
//! mounted next to the real routes, gets admission, limits, problem+json errors, compression
//! and metrics without any code of its own for them.

use axum::body::Body;
use axum::http::{Request, header};
use axum::routing::post;
use ndarray::{Array2, Axis};
use serde::Deserialize;
use serde_json::json;
use simserve::admission::estimate;
use simserve::answer::Encoding;
use simserve::answer::json::DenseField;
use simserve::answer::outcome::Outcome;
use simserve::api::{Context, Operation, operate};
use simserve::body::{TensorFields, fields};
use simserve::compute::{self, Cancel, Metric};
use simserve::error::ApiError;
use simserve::tensor::Input;

use crate::helpers::{TestApp, one_permit, routes_and_state, take_a_permit};

/// `POST /similarity/centroid`: every row of `a` against the mean of the rows.
struct Centroid {
    rows: Array2<f32>,
    metric: Metric,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CentroidRequest {
    #[serde(deserialize_with = "fields::a_matrix")]
    a: Input,
    #[serde(default, deserialize_with = "fields::metric")]
    metric: Metric,
}

impl TensorFields for CentroidRequest {
    const TENSORS: &'static [&'static str] = &["a"];
}

impl Operation for Centroid {
    const PATH: &'static str = "/similarity/centroid";
    type Request = CentroidRequest;

    fn parse(request: CentroidRequest, _context: &Context) -> Result<Self, ApiError> {
        let rows = match request.a {
            Input::Tensor(a) => a.into_matrix().expect("a_matrix takes rank 2 only"),
            Input::Table(_) => return Err(ApiError::Invalid("a: takes a tensor".into())),
        };
        Ok(Centroid {
            rows,
            metric: request.metric,
        })
    }

    fn record_size(&self, span: &tracing::Span) {
        span.record("rows", self.rows.nrows());
    }

    fn work(&self) -> usize {
        self.rows.len() * 2
    }

    fn estimate(&self) -> usize {
        estimate::job(
            self.rows.len(),
            self.work(),
            self.rows.nrows(),
            Encoding::Json,
        )
    }

    fn run(self, cancel: &Cancel) -> Result<Outcome, ApiError> {
        let mean = self.rows.mean_axis(Axis(0)).expect("at least one row");
        let centre = mean.insert_axis(Axis(0));
        let scores = compute::pairwise(self.rows.view(), centre.view(), self.metric, cancel)?;
        Ok(Outcome::dense(
            self.metric,
            Encoding::Json,
            DenseField::Scores,
            scores.into_dyn(),
            Vec::new(),
        ))
    }
}

fn app_with_centroid(
    change: impl FnOnce(&mut simserve::Config),
) -> (TestApp, simserve::state::AppState) {
    let routes = simserve::app::routes().route(Centroid::PATH, post(operate::<Centroid>));
    routes_and_state(routes, change)
}

fn centroid_request(body: &serde_json::Value) -> Request<Body> {
    Request::post(Centroid::PATH)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn an_operation_added_in_one_file_answers_like_the_others() {
    let (app, _state) = app_with_centroid(|_| {});
    let got = app
        .send_unchecked(centroid_request(
            &json!({"a": [[1, 0], [0, 1]], "metric": "dot"}),
        ))
        .await;
    assert_eq!(got.status, 200, "{}", got.json);
    assert_eq!(
        got.json,
        json!({"metric": "dot", "shape": [2], "scores": [0.5, 0.5]})
    );

    let ragged = app
        .send_unchecked(centroid_request(&json!({"a": [[1, 0], [1]]})))
        .await;
    ragged.assert_problem(422, "a[1]: row has 1 values, expected 2");
    let unknown = app
        .send_unchecked(centroid_request(&json!({"a": [[1]], "b": [[1]]})))
        .await;
    unknown.assert_problem(422, "unknown field `b`, expected `a` or `metric`");

    let metrics = app.metrics().await;
    assert!(
        metrics
            .contains("simserve_compute_duration_seconds_count{route=\"/similarity/centroid\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_operation_added_in_one_file_is_admitted_like_the_others() {
    let (app, state) = app_with_centroid(one_permit(0));
    let busy = take_a_permit(&state).await;
    let got = app
        .send_unchecked(centroid_request(&json!({"a": [[1, 0]]})))
        .await;
    got.assert_problem(503, "every compute slot is busy and the wait queue is full");
    assert_eq!(got.headers[header::RETRY_AFTER], "1");
    drop(busy);

    // Large answers are compressed where they are computed, as on the real routes.
    let rows: Vec<Vec<f32>> = (0..400).map(|i| vec![i as f32, 1.0]).collect();
    let mut request = centroid_request(&json!({"a": rows}));
    let gzip = header::HeaderValue::from_static("gzip");
    request.headers_mut().insert(header::ACCEPT_ENCODING, gzip);
    let response = app.raw(request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
}
