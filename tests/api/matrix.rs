//! `POST /similarity/matrix`.

use serde_json::json;

use crate::helpers::{app, app_and_state, app_with, assert_close, floats, index_rows};

const PATH: &str = "/similarity/matrix";

#[tokio::test]
async fn a_against_itself_is_symmetric_with_a_diagonal_of_exactly_one() {
    let body = json!({"a": [[0.3, 0.1, 0.7], [1, 1, 1], [-2, 0.5, 0.25], [0.3, 0.1, 0.7]]});
    let got = app().post(PATH, &body).await;
    assert_eq!(got.ok()["shape"], json!([4, 4]));
    let (shape, m) = floats(&got.json["matrix"]);
    assert_eq!(shape, vec![4, 4]);
    for i in 0..4 {
        assert_eq!(m[i * 4 + i], 1.0, "diagonal {i}");
        for j in 0..4 {
            assert!((-1.0..=1.0).contains(&m[i * 4 + j]));
            assert!((m[i * 4 + j] - m[j * 4 + i]).abs() <= 1e-6);
        }
    }
    // Rows 0 and 3 are the same vector.
    assert!((m[3] - 1.0).abs() <= 1e-6);
}

#[tokio::test]
async fn a_against_b_gives_an_n_by_m_matrix() {
    let body = json!({"a": [[1, 0], [0, 1]], "b": [[1, 0], [1, 1], [0, 3]], "metric": "dot"});
    let got = app().post(PATH, &body).await;
    assert_eq!(got.ok()["shape"], json!([2, 3]));
    assert_eq!(
        got.json["matrix"],
        json!([[1.0, 1.0, 0.0], [0.0, 1.0, 3.0]])
    );
}

#[tokio::test]
async fn batched_sets_give_one_matrix_per_set() {
    let body = json!({"a": [[[1, 0], [0, 1]], [[1, 1], [-1, -1]], [[2, 0], [0, 0]]]});
    let got = app().post(PATH, &body).await;
    assert_eq!(got.ok()["shape"], json!([3, 2, 2]));
    let (shape, m) = floats(&got.json["matrix"]);
    assert_eq!(shape, vec![3, 2, 2]);
    assert_close(
        &m,
        &[1.0, 0.0, 0.0, 1.0, 1.0, -1.0, -1.0, 1.0, 1.0, 0.0, 0.0, 0.0],
        1e-6,
    );
}

#[tokio::test]
async fn batched_a_and_b_must_agree_in_rank_and_set_count() {
    let app = app();
    let got = app.post(PATH, &json!({"a": [[[1]]], "b": [[1]]})).await;
    got.assert_problem(422, "b: has rank 2, but a has rank 3");
    let got = app
        .post(PATH, &json!({"a": [[[1]], [[2]]], "b": [[[1]]]}))
        .await;
    got.assert_problem(422, "b: has 1 sets, but a has 2");
}

#[tokio::test]
async fn top_k_lists_nearest_first_with_ties_to_the_lower_index() {
    let body = json!({"a": [[1, 0]], "b": [[0, 1], [2, 0], [1, 0], [1, 1], [5, 0]], "top_k": 4});
    let got = app().post(PATH, &body).await;
    assert_eq!(got.ok()["shape"], json!([1, 4]));
    assert_eq!(index_rows(&got.json["indices"]), vec![vec![1, 2, 4, 3]]);
    let (_, scores) = floats(&got.json["scores"]);
    assert_close(&scores, &[1.0, 1.0, 1.0, 0.5f64.sqrt()], 1e-6);
}

#[tokio::test]
async fn distances_list_the_smallest_first() {
    let body =
        json!({"a": [[0.0]], "b": [[3], [-1], [2], [0.5]], "metric": "manhattan", "top_k": 3});
    let got = app().post(PATH, &body).await;
    assert_eq!(index_rows(&got.ok()["indices"]), vec![vec![3, 1, 2]]);
    assert_eq!(floats(&got.json["scores"]).1, vec![0.5, 1.0, 2.0]);
}

#[tokio::test]
async fn top_k_beyond_the_candidates_returns_them_all() {
    let body = json!({"a": [[1, 0], [0, 1], [1, 1]], "top_k": 10, "exclude_self": true});
    let got = app().post(PATH, &body).await;
    assert_eq!(got.ok()["shape"], json!([3, 2]));
    assert_eq!(
        index_rows(&got.json["indices"]),
        vec![vec![2, 1], vec![2, 0], vec![0, 1]]
    );
}

#[tokio::test]
async fn threshold_keeps_rows_of_different_lengths_without_a_shape() {
    let body = json!({"a": [[1, 0], [0.9, 0.1], [0, 1]], "threshold": 0.9});
    let got = app().post(PATH, &body).await;
    let json = got.ok();
    assert!(json.get("shape").is_none());
    assert_eq!(
        index_rows(&json["indices"]),
        vec![vec![0, 1], vec![1, 0], vec![2]]
    );
    let rows = json["scores"].as_array().unwrap();
    assert_eq!(floats(&rows[2]).1, vec![1.0]);
}

#[tokio::test]
async fn threshold_with_base64_scores_gives_one_tensor_per_row() {
    let body = json!({"a": [[1, 0], [0, 1]], "b": [[1, 0], [2, 0], [0, 1]], "threshold": 0.5, "response_encoding": "base64"});
    let got = app().post(PATH, &body).await;
    // Rows hold 2 and 1 entries.
    let rows = got.ok()["scores"].as_array().unwrap();
    assert_eq!(floats(&rows[0]), (vec![2], vec![1.0, 1.0]));
    assert_eq!(floats(&rows[1]), (vec![1], vec![1.0]));
}

#[tokio::test]
async fn threshold_and_top_k_together_keep_at_most_k_passing_entries() {
    let body = json!({"a": [[1, 0]], "b": [[1, 0], [0, 1], [1, 0.1], [1, 0.2]], "threshold": 0.95, "top_k": 2});
    let got = app().post(PATH, &body).await;
    assert_eq!(index_rows(&got.ok()["indices"]), vec![vec![0, 2]]);
}

#[tokio::test]
async fn batched_top_k_keeps_the_set_axis() {
    let body = json!({"a": [[[1, 0], [0, 1], [1, 1]], [[1, 0], [-1, 0], [2, 0]]], "top_k": 1, "exclude_self": true});
    let got = app().post(PATH, &body).await;
    assert_eq!(got.ok()["shape"], json!([2, 3, 1]));
    assert_eq!(
        got.json["indices"],
        json!([[[2], [2], [0]], [[2], [0], [0]]])
    );
}

#[tokio::test]
async fn exclude_self_needs_a_against_itself_and_a_selection() {
    let app = app();
    let got = app
        .post(
            PATH,
            &json!({"a": [[1]], "b": [[1]], "top_k": 1, "exclude_self": true}),
        )
        .await;
    got.assert_problem(422, "exclude_self: applies only when b is omitted");
    let got = app
        .post(PATH, &json!({"a": [[1]], "exclude_self": true}))
        .await;
    got.assert_problem(422, "exclude_self: applies only with top_k or threshold");
}

#[tokio::test]
async fn top_k_and_threshold_must_be_sensible() {
    let app = app();
    for (option, want) in [
        (
            json!({"top_k": 0}),
            "top_k: expected an integer of at least 1, found 0",
        ),
        (
            json!({"top_k": -3}),
            "top_k: expected an integer of at least 1, found -3",
        ),
        (
            json!({"top_k": 1.5}),
            "top_k: expected an integer of at least 1, found 1.5",
        ),
        (
            json!({"top_k": null}),
            "top_k: expected an integer of at least 1, found null",
        ),
        (
            json!({"threshold": 1e39}),
            "threshold: expected a number within the float32 range, found 1e39",
        ),
        (
            json!({"threshold": "high"}),
            "threshold: expected a number within the float32 range, found a string",
        ),
    ] {
        let mut body = json!({"a": [[1]]});
        for (key, value) in option.as_object().unwrap() {
            body[key] = value.clone();
        }
        app.post(PATH, &body).await.assert_problem(422, want);
    }
}

#[tokio::test]
async fn a_dense_result_over_the_limit_is_refused_with_its_size_and_a_suggestion() {
    let app = app_with(|c| c.max_output_elements = 5);
    let got = app.post(PATH, &json!({"a": [[1], [2], [3]]})).await;
    got.assert_problem(
        422,
        "the result would hold 3 × 3 numbers, more than the limit of 5; ask for top_k or threshold",
    );
    let got = app
        .post(PATH, &json!({"a": [[1], [2], [3]], "top_k": 2}))
        .await;
    got.assert_problem(422, "the result would hold 3 × 2 numbers");
    let got = app
        .post(PATH, &json!({"a": [[1], [2], [3]], "top_k": 1}))
        .await;
    assert_eq!(got.ok()["shape"], json!([3, 1]));
}

#[tokio::test]
async fn a_threshold_selection_over_the_limit_is_refused() {
    let app = app_with(|c| c.max_output_elements = 5);
    let got = app
        .post(PATH, &json!({"a": [[1], [2], [3]], "threshold": 0.0}))
        .await;
    got.assert_problem(422, "the selection holds more than 5 entries");
}

#[tokio::test]
async fn the_default_output_limit_is_sixteen_million_numbers() {
    // 4097 × 4097 > 16,777,216 = 4096², refused before any work is done.
    let rows: Vec<[f32; 1]> = vec![[1.0]; 4097];
    let got = app().post(PATH, &json!({"a": rows})).await;
    got.assert_problem(
        422,
        "the result would hold 4097 × 4097 numbers, more than the limit of 16777216",
    );
}

#[tokio::test]
async fn the_selection_limit_message_suits_distances_too() {
    let app = app_with(|c| c.max_output_elements = 5);
    let body = json!({"a": [[1], [2], [3]], "threshold": 10.0, "metric": "euclidean"});
    let got = app.post(PATH, &body).await;
    got.assert_problem(
        422,
        "the selection holds more than 5 entries, the output limit; add top_k or make threshold stricter",
    );
    // Sets share the limit, and the message gives all of it: the second set of nine
    // entries is refused with three left of twelve.
    let app = app_with(|c| c.max_output_elements = 12);
    let body =
        json!({"a": [[[1], [2], [3]], [[1], [2], [3]]], "threshold": 10.0, "metric": "euclidean"});
    app.post(PATH, &body).await.assert_problem(
        422,
        "the selection holds more than 12 entries, the output limit; add top_k or make threshold stricter",
    );
}

#[tokio::test]
async fn rows_with_nothing_selected_are_empty_lists() {
    let got = app()
        .post(PATH, &json!({"a": [[1, 0], [0, 1]], "threshold": 2}))
        .await;
    let json = got.ok();
    assert_eq!(json["shape"], json!([2, 0]));
    assert_eq!(json["indices"], json!([[], []]));
    assert_eq!(json["scores"], json!([[], []]));
    let got = app()
        .post(PATH, &json!({"a": [[[1, 0], [0, 1]]], "threshold": 2}))
        .await;
    assert_eq!(got.ok()["scores"], json!([[[], []]]));
}

#[tokio::test]
async fn an_overflow_in_a_batch_names_its_set() {
    let body = json!({"a": [[[1, 1]], [[1e20, 1e20]]], "metric": "dot"});
    let got = app().post(PATH, &body).await;
    got.assert_problem(422, "the score at [1][0][0] overflows float32");
    let top_k = json!({"a": [[[1, 1]], [[1e20, 1e20]]], "metric": "dot", "top_k": 1});
    let got = app().post(PATH, &top_k).await;
    got.assert_problem(422, "the score at [1][0][0] overflows float32");
}

#[tokio::test]
async fn an_overflow_in_one_set_is_named_by_row_and_column() {
    for extra in [json!({}), json!({"top_k": 1})] {
        let mut body = json!({"a": [[1, 1], [1e20, 1e20]], "metric": "dot"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let got = app().post(PATH, &body).await;
        got.assert_problem(422, "the score at [1][1] overflows float32");
    }
}

#[tokio::test]
async fn a_large_json_matrix_is_sent_as_its_pieces_with_its_length_known() {
    use axum::body::Body;
    use axum::http::{Request, header};
    use http_body::Body as _;
    use http_body_util::BodyExt;

    // 400 x 400 numbers: above the size from which the text is formatted in pieces.
    let row = |i: usize| -> Vec<f64> { (0..3).map(|k| ((i * 3 + k) as f64).sin()).collect() };
    let a: Vec<Vec<f64>> = (0..400).map(row).collect();
    let body = serde_json::to_vec(&json!({"a": a, "metric": "dot"})).unwrap();
    let (app, state) = app_and_state(|config| config.compute_threads = 2);
    let request = |accept: &str| {
        Request::post(PATH)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT_ENCODING, accept)
            .body(Body::from(body.clone()))
            .unwrap()
    };

    let mut response = app.raw(request("identity")).await;
    assert_eq!(response.status(), 200);
    let declared = response.body().size_hint().exact();
    let mut text = Vec::new();
    let mut frames = 0;
    while let Some(frame) = response.body_mut().frame().await {
        let frame = frame.unwrap();
        text.extend_from_slice(frame.data_ref().unwrap());
        frames += 1;
        // Every piece holds the request's memory until the last one is gone.
        assert!(
            state.admission.reserved() > 0,
            "memory held at frame {frames}"
        );
    }
    assert!(frames > 2, "sent in {frames} frames");
    assert_eq!(declared, Some(text.len() as u64));
    drop(response);
    assert_eq!(state.admission.reserved(), 0, "memory released once sent");
    let answer: serde_json::Value = serde_json::from_slice(&text).unwrap();
    let (shape, m) = floats(&answer["matrix"]);
    assert_eq!(shape, vec![400, 400]);
    let want: Vec<f64> = (0..400 * 400)
        .map(|at| (0..3).map(|k| a[at / 400][k] * a[at % 400][k]).sum())
        .collect();
    assert_close(&m, &want, 1e-6);

    // Compressed, the pieces are one body with the same text.
    let response = app.raw(request("gzip")).await;
    assert_eq!(response.headers()[header::CONTENT_ENCODING], "gzip");
    let packed = response.into_body().collect().await.unwrap().to_bytes();
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&packed[..]),
        &mut unpacked,
    )
    .unwrap();
    assert!(unpacked == text, "the gzip body is the same text");
}
