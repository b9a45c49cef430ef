//! `POST /similarity/pairwise`.

use serde_json::json;

use crate::helpers::{app, assert_close, b64_f32, floats};

const PATH: &str = "/similarity/pairwise";

#[tokio::test]
async fn row_i_of_a_is_scored_with_row_i_of_b_by_cosine_by_default() {
    let body = json!({"a": [[1, 0], [1, 1], [3, 4]], "b": [[0, 1], [2, 2], [-3, -4]]});
    let got = app().post(PATH, &body).await;
    let json = got.ok();
    assert_eq!(json["metric"], "cosine");
    assert_eq!(json["shape"], json!([3]));
    assert_close(&floats(&json["scores"]).1, &[0.0, 1.0, -1.0], 1e-6);
}

#[tokio::test]
async fn each_metric_scores_a_known_pair() {
    let app = app();
    // x = (3, 0), y = (4, 2): x·y = 12, ‖x‖ = 3, ‖y‖ = √20, x − y = (−1, −2).
    let cases = [
        ("cosine", 12.0 / (3.0 * 20f64.sqrt())),
        ("dot", 12.0),
        ("euclidean", 5f64.sqrt()),
        ("manhattan", 3.0),
    ];
    for (metric, want) in cases {
        let body = json!({"a": [[3, 0]], "b": [[4, 2]], "metric": metric});
        let got = app.post(PATH, &body).await;
        let json = got.ok();
        assert_eq!(json["metric"], metric);
        assert_close(
            &floats(&json["scores"]).1,
            &[want],
            1e-6 * want.abs().max(1.0),
        );
    }
}

#[tokio::test]
async fn the_keras_pairs_layout_scores_the_two_vectors_of_each_entry() {
    let body = json!({"pairs": [[[1, 0], [1, 0]], [[1, 0], [0, 1]], [[1, 1], [-1, -1]]]});
    let got = app().post(PATH, &body).await;
    assert_eq!(got.ok()["shape"], json!([3]));
    assert_close(&floats(&got.json["scores"]).1, &[1.0, 0.0, -1.0], 1e-6);
}

#[tokio::test]
async fn identical_rows_score_exactly_one_and_distance_exactly_zero() {
    let row = [0.1f32, 0.2, 0.3, 0.7, 1e-3];
    let app = app();
    let body = json!({"a": [row], "b": [row]});
    assert_eq!(
        floats(&app.post(PATH, &body).await.json["scores"]).1,
        vec![1.0]
    );
    let body = json!({"a": [row], "b": [row], "metric": "euclidean"});
    assert_eq!(
        floats(&app.post(PATH, &body).await.json["scores"]).1,
        vec![0.0]
    );
}

#[tokio::test]
async fn a_zero_vector_has_cosine_zero() {
    let body = json!({"a": [[0, 0, 0], [0, 0, 0]], "b": [[1, 2, 3], [0, 0, 0]]});
    let got = app().post(PATH, &body).await;
    assert_eq!(floats(&got.ok()["scores"]).1, vec![0.0, 0.0]);
}

#[tokio::test]
async fn a_single_row_on_either_side_is_compared_with_every_row_of_the_other() {
    let app = app();
    let got = app
        .post(
            PATH,
            &json!({"a": [[1, 0]], "b": [[1, 0], [0, 1], [-1, 0]]}),
        )
        .await;
    assert_close(&floats(&got.ok()["scores"]).1, &[1.0, 0.0, -1.0], 1e-6);
    let got = app
        .post(
            PATH,
            &json!({"a": [[1, 0], [0, 1]], "b": [[0, 2]], "metric": "dot"}),
        )
        .await;
    assert_close(&floats(&got.ok()["scores"]).1, &[0.0, 2.0], 0.0);
}

#[tokio::test]
async fn base64_in_and_out_gives_the_same_scores_as_json() {
    let app = app();
    let (a, b) = ([0.5f32, -1.25, 2.0, 3.5], [1.0f32, 0.25, -2.0, 0.125]);
    let json_body = json!({"a": [[0.5, -1.25], [2.0, 3.5]], "b": [[1.0, 0.25], [-2.0, 0.125]]});
    let b64_body = json!({"a": b64_f32(&[2, 2], &a), "b": b64_f32(&[2, 2], &b), "response_encoding": "base64"});
    let plain = app.post(PATH, &json_body).await;
    let packed = app.post(PATH, &b64_body).await;
    assert!(packed.ok()["scores"].is_object());
    assert_eq!(
        floats(&packed.json["scores"]),
        floats(&plain.ok()["scores"])
    );
    assert_eq!(floats(&packed.json["scores"]).0, vec![2]);
}

#[tokio::test]
async fn unequal_row_counts_are_refused_naming_b() {
    let got = app()
        .post(PATH, &json!({"a": [[1], [2]], "b": [[1], [2], [3]]}))
        .await;
    got.assert_problem(422, "b: has 3 rows but a has 2");
}

#[tokio::test]
async fn vectors_of_different_dimensions_are_refused() {
    let got = app()
        .post(PATH, &json!({"a": [[1, 2]], "b": [[1, 2, 3]]}))
        .await;
    got.assert_problem(
        422,
        "b: vectors have dimension 3, but those of a have dimension 2",
    );
}

#[tokio::test]
async fn pairs_must_hold_two_vectors_each() {
    let got = app().post(PATH, &json!({"pairs": [[[1], [2], [3]]]})).await;
    got.assert_problem(
        422,
        "pairs: each entry must hold exactly 2 vectors, found 3",
    );
    let got = app().post(PATH, &json!({"pairs": [[1, 2]]})).await;
    got.assert_problem(422, "pairs: expected a tensor of rank 3, found rank 2");
}

#[tokio::test]
async fn pairs_and_rows_cannot_be_mixed_and_one_of_them_is_needed() {
    let app = app();
    let got = app
        .post(PATH, &json!({"pairs": [[[1], [2]]], "a": [[1]]}))
        .await;
    got.assert_problem(422, "pairs: give either pairs, or a and b, not both");
    app.post(PATH, &json!({"a": [[1]]}))
        .await
        .assert_problem(422, "b: missing");
    app.post(PATH, &json!({}))
        .await
        .assert_problem(422, "a: missing");
}

#[tokio::test]
async fn a_dot_product_beyond_float32_is_refused_rather_than_returned_as_infinity() {
    let got = app()
        .post(
            PATH,
            &json!({"a": [[1e20, 1e20]], "b": [[1e20, 1e20]], "metric": "dot"}),
        )
        .await;
    got.assert_problem(422, "the score at [0] overflows float32");
}

#[tokio::test]
async fn more_scores_than_the_output_limit_are_refused() {
    let app = crate::helpers::app_with(|c| c.max_output_elements = 2);
    let got = app
        .post(PATH, &json!({"a": [[1], [2], [3]], "b": [[1]]}))
        .await;
    got.assert_problem(
        422,
        "the result would hold 3 numbers, more than the limit of 2",
    );
}

#[tokio::test]
async fn numbers_are_rounded_once_whether_or_not_the_keys_carry_escapes() {
    // 1 + 2^-24 + 2^-77 lies above the midpoint between 1 and the next float32, so it is
    // 1 + 2^-23; rounded first to the nearest float64 (the midpoint), then to float32, it
    // would be 1.
    let above_midpoint = "1.00000005960464477539063";
    let app = app();
    for (a, metric) in [("a", "metric"), ("\\u0061", "\\u006detric")] {
        let body =
            format!(r#"{{"{a}": [[{above_midpoint}]], "b": [[0]], "{metric}": "manhattan"}}"#);
        let got = app
            .post_raw(PATH, Some("application/json"), body.into_bytes())
            .await;
        assert_eq!(floats(&got.ok()["scores"]).1, [1.0 + f32::EPSILON], "{a}");
    }
}
