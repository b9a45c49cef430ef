//! Properties through the API: the same vectors sent as nested JSON and as base64 tensors
//! give identical answers, for every metric and output form.

use std::sync::LazyLock;

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::helpers::{TestApp, app, b64_f32};

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
});

static APP: LazyLock<TestApp> = LazyLock::new(app);

/// Finite float32 values of every scale: zeros, tiny, ordinary and huge magnitudes.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(0.0f32),
        -1e3f32..1e3f32,
        (-1.0f32..1.0f32).prop_map(|x| x * 1e-30),
        (-1.0f32..1.0f32).prop_map(|x| x * 1e30),
    ]
}

/// `rows × dim` values, row-major, with their shape.
fn matrix(max_rows: usize, dim: usize) -> impl Strategy<Value = (Vec<usize>, Vec<f32>)> {
    (1..=max_rows).prop_flat_map(move |n| {
        proptest::collection::vec(value(), n * dim).prop_map(move |v| (vec![n, dim], v))
    })
}

fn nested(shape: &[usize], values: &[f32]) -> Value {
    Value::Array(values.chunks(shape[1]).map(|row| json!(row)).collect())
}

fn post(path: &str, body: &Value) -> crate::helpers::TestResponse {
    RUNTIME.block_on(APP.post(path, body))
}

proptest! {
    #[test]
    fn json_and_base64_inputs_give_identical_results(
        ((shape_a, a), (shape_b, b)) in (1usize..12).prop_flat_map(|d| (matrix(6, d), matrix(6, d))),
        metric in prop_oneof![Just("cosine"), Just("dot"), Just("euclidean"), Just("manhattan")],
        form in 0usize..3,
    ) {
        let options = match form {
            0 => json!({}),
            1 => json!({"top_k": 2}),
            _ => json!({"threshold": 0.5}),
        };
        let mut as_json = json!({"a": nested(&shape_a, &a), "b": nested(&shape_b, &b), "metric": metric});
        let mut as_b64 = json!({"a": b64_f32(&shape_a, &a), "b": b64_f32(&shape_b, &b), "metric": metric});
        for (key, value) in options.as_object().unwrap() {
            as_json[key] = value.clone();
            as_b64[key] = value.clone();
        }
        let (mut x, mut y) = (post("/similarity/matrix", &as_json), post("/similarity/matrix", &as_b64));
        prop_assert_eq!(x.status, y.status, "{} / {}", x.json, y.json);
        // Every answer has its own request id; the rest must be identical.
        for answer in [&mut x.json, &mut y.json] {
            if let Some(object) = answer.as_object_mut() {
                object.remove("request_id");
            }
        }
        prop_assert_eq!(&x.json, &y.json);
    }
}
