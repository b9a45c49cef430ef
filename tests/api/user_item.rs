//! `POST /similarity/user-item`.

use serde_json::{Value, json};

use crate::helpers::{app, assert_close, floats, index_rows};

const PATH: &str = "/similarity/user-item";

fn users_items() -> Value {
    json!({
        "users": [[1, 0], [0, 1], [1, 1]],
        "items": [[1, 0], [0, 2], [1, 1], [-1, 0]],
    })
}

fn with(extra: Value) -> Value {
    let mut body = users_items();
    for (key, value) in extra.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

#[tokio::test]
async fn pairs_score_each_user_with_each_item_like_the_keras_embedding_model() {
    let got = app()
        .post(
            PATH,
            &with(json!({"pairs": [[0, 0], [1, 1], [2, 3], [0, 2]]})),
        )
        .await;
    assert_eq!(got.ok()["shape"], json!([4]));
    assert_close(
        &floats(&got.json["scores"]).1,
        &[1.0, 1.0, -0.5f64.sqrt(), 0.5f64.sqrt()],
        1e-6,
    );
}

#[tokio::test]
async fn without_pairs_or_top_k_the_full_users_by_items_matrix_is_returned() {
    let got = app().post(PATH, &with(json!({"metric": "dot"}))).await;
    assert_eq!(got.ok()["shape"], json!([3, 4]));
    let (_, m) = floats(&got.json["matrix"]);
    assert_close(
        &m,
        &[1.0, 0.0, 1.0, -1.0, 0.0, 2.0, 1.0, 0.0, 1.0, 2.0, 2.0, -1.0],
        0.0,
    );
}

#[tokio::test]
async fn top_k_leaves_out_seen_items_and_names_them_by_id() {
    let body = with(json!({
        "top_k": 2,
        "exclude": [[0], [], [2, 1]],
        "item_ids": ["apple", "pear", "plum", "fig"],
    }));
    let got = app().post(PATH, &body).await;
    let json = got.ok();
    assert_eq!(json["shape"], json!([3, 2]));
    assert_eq!(
        index_rows(&json["indices"]),
        vec![vec![2, 1], vec![1, 2], vec![0, 3]]
    );
    assert_eq!(
        json["items"],
        json!([["plum", "pear"], ["pear", "plum"], ["apple", "fig"]])
    );
}

#[tokio::test]
async fn exclusions_that_leave_fewer_items_than_k_give_shorter_rows_and_no_shape() {
    let body = with(json!({"top_k": 3, "exclude": [[0, 1], [], []]}));
    let got = app().post(PATH, &body).await;
    let json = got.ok();
    assert!(json.get("shape").is_none());
    assert_eq!(index_rows(&json["indices"])[0], vec![2, 3]);
    assert_eq!(index_rows(&json["indices"])[1].len(), 3);
}

#[tokio::test]
async fn threshold_alone_selects_items_per_user() {
    let got = app().post(PATH, &with(json!({"threshold": 0.9}))).await;
    assert_eq!(
        index_rows(&got.ok()["indices"]),
        vec![vec![0], vec![1], vec![2]]
    );
}

#[tokio::test]
async fn indices_out_of_range_are_named() {
    let app = app();
    let got = app
        .post(PATH, &with(json!({"pairs": [[0, 0], [3, 0]]})))
        .await;
    got.assert_problem(422, "pairs[1][0]: user index 3 is out of range for 3 users");
    let got = app.post(PATH, &with(json!({"pairs": [[0, 4]]}))).await;
    got.assert_problem(422, "pairs[0][1]: item index 4 is out of range for 4 items");
    let got = app.post(PATH, &with(json!({"pairs": [[0, 1, 2]]}))).await;
    got.assert_problem(
        422,
        "pairs[0]: expected [user_index, item_index], found 3 values",
    );
    let got = app.post(PATH, &with(json!({"pairs": [[0, -1]]}))).await;
    got.assert_problem(422, "pairs[0][1]: expected a non-negative integer index");
    let got = app
        .post(PATH, &with(json!({"top_k": 1, "exclude": [[], [9], []]})))
        .await;
    got.assert_problem(
        422,
        "exclude[1][0]: item index 9 is out of range for 4 items",
    );
}

#[tokio::test]
async fn exclude_and_item_ids_must_have_one_entry_per_user_and_item() {
    let app = app();
    let got = app
        .post(PATH, &with(json!({"top_k": 1, "exclude": [[]]})))
        .await;
    got.assert_problem(422, "exclude: has 1 lists, expected one per user (3)");
    let got = app
        .post(PATH, &with(json!({"top_k": 1, "item_ids": ["a"]})))
        .await;
    got.assert_problem(422, "item_ids: has 1 ids, expected one per item (4)");
}

#[tokio::test]
async fn options_that_do_not_go_together_are_refused() {
    let app = app();
    let got = app
        .post(PATH, &with(json!({"pairs": [[0, 0]], "top_k": 1})))
        .await;
    got.assert_problem(422, "pairs: cannot be combined with top_k");
    let got = app
        .post(PATH, &with(json!({"exclude": [[], [], []]})))
        .await;
    got.assert_problem(422, "exclude: applies only with top_k or threshold");
    let got = app.post(PATH, &with(json!({"item_ids": ["x", "y"]}))).await;
    got.assert_problem(422, "item_ids: applies only with top_k or threshold");
    let got = app
        .post(
            PATH,
            &with(json!({"exclude": [[], [], []], "item_ids": ["x", "y"]})),
        )
        .await;
    got.assert_problem(
        422,
        "exclude and item_ids: apply only with top_k or threshold",
    );
    let got = app
        .post(
            PATH,
            &with(json!({"pairs": [[0, 0]], "threshold": 0.5, "exclude": [[], [], []]})),
        )
        .await;
    got.assert_problem(
        422,
        "pairs: cannot be combined with threshold and exclude; pairs are scored, not ranked",
    );
}

#[tokio::test]
async fn users_and_items_must_share_a_dimension() {
    let got = app()
        .post(PATH, &json!({"users": [[1, 2]], "items": [[1]]}))
        .await;
    got.assert_problem(
        422,
        "items: vectors have dimension 1, but those of users have dimension 2",
    );
    let got = app().post(PATH, &json!({"users": [[1, 2]]})).await;
    got.assert_problem(422, "missing field `items`");
}

#[tokio::test]
async fn long_item_ids_repeated_for_many_users_are_refused_before_any_work() {
    let app = crate::helpers::app_with(|c| c.max_output_elements = 1000);
    let users: Vec<[f32; 1]> = vec![[1.0]; 200];
    let body = json!({"users": users, "items": [[1.0]], "top_k": 1, "item_ids": ["x".repeat(100)]});
    let got = app.post(PATH, &body).await;
    got.assert_problem(422, "item_ids: listing up to 1 ids of up to 100 bytes for each of 200 rows exceeds the output limit of 1000 numbers");
    let body = json!({"users": users, "items": [[1.0]], "top_k": 1, "item_ids": ["short"]});
    assert_eq!(app.post(PATH, &body).await.status, 200);
}

#[tokio::test]
async fn a_threshold_listing_item_ids_is_limited_by_what_it_selects_not_refused_up_front() {
    // 200 users against 10 items could list 2,000 ids of 3 units (8 bytes each) each, over
    // this limit; each user selects one item, 600 units, and is answered.
    let app = crate::helpers::app_with(|c| c.max_output_elements = 1000);
    let users: Vec<[f32; 1]> = vec![[1.0]; 200];
    let mut items: Vec<[f32; 1]> = vec![[-1.0]; 10];
    items[3] = [1.0];
    let ids: Vec<String> = (0..10).map(|i| format!("{i:020}")).collect();
    let body = json!({"users": users, "items": items, "threshold": 0.5, "item_ids": ids});
    let got = app.post(PATH, &body).await;
    let listed = got.ok()["items"].as_array().unwrap();
    assert_eq!(listed.len(), 200);
    assert!(
        listed.iter().all(|row| row == &json!([ids[3]])),
        "{:?}",
        listed[0]
    );
    // Ids of 100 bytes (13 units) allow 76 entries, fewer than the 200 selected.
    let long: Vec<String> = (0..10).map(|i| format!("{i:0100}")).collect();
    let body = json!({"users": users, "items": items, "threshold": 0.5, "item_ids": long});
    app.post(PATH, &body)
        .await
        .assert_problem(422, "the selection holds more than 76 entries");
}

#[tokio::test]
async fn listed_ids_are_charged_for_their_json_text_not_as_numbers() {
    // 100 users each selecting all 1,000 items: 100,000 entries, each an index and a score
    // (44 bytes each in the estimate) and an id. Ids of 8 plain bytes take 10 bytes of text
    // and a comma, 22 with room to double, where a number for every 8 bytes charged 44: the
    // job is about 11.4 MB, not 13.6, and fits a 12 MiB budget.
    let users: Vec<[f32; 1]> = vec![[1.0]; 100];
    let items: Vec<[f32; 1]> = vec![[1.0]; 1000];
    let body = |ids: Vec<String>| json!({"users": users, "items": items, "threshold": 0.5, "item_ids": ids});
    let plain: Vec<String> = (0..1000).map(|i| format!("item{i:04}")).collect();
    let app = crate::helpers::app_with(|c| c.memory_budget_bytes = 12 << 20);
    let got = app.post(PATH, &body(plain.clone())).await;
    let listed = got.ok()["items"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 100);
    assert!(listed.iter().all(|row| row == &json!(plain)));
    // Ids of 8 bytes, four of them control characters written `\u0001`, take 30 bytes of
    // text: about 15.4 MB, over this budget of 14.5 MB.
    let escaped: Vec<String> = (0..1000)
        .map(|i| format!("\u{1}\u{1}\u{1}\u{1}{i:04}"))
        .collect();
    let app = crate::helpers::app_with(|c| c.memory_budget_bytes = 14_500_000);
    let got = app.post(PATH, &body(escaped)).await;
    got.assert_problem(422, "this request needs about");
}

#[tokio::test]
async fn an_excluded_id_that_two_items_hold_is_refused_rather_than_half_excluded() {
    let body = json!({"users": [[1.0, 0.0]], "items": [[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]],
                      "top_k": 1, "item_ids": ["a", "b", "a"], "exclude": [["b", "a"]]});
    app().post(PATH, &body).await.assert_problem(
        422,
        "exclude[0][1]: the id \"a\" is held by more than one item (positions 0 and 2); \
         list each item once, or exclude each of its positions by index",
    );
    // By index, both positions go: the one item left is listed.
    let body = json!({"users": [[1.0, 0.0]], "items": [[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]],
                      "top_k": 1, "item_ids": ["a", "b", "a"], "exclude": [[0, 2]]});
    let got = app().post(PATH, &body).await;
    assert_eq!(got.ok()["items"], json!([["b"]]));
}

#[tokio::test]
async fn item_ids_must_be_strings() {
    let got = app()
        .post(
            PATH,
            &with(json!({"top_k": 1, "item_ids": ["a", "b", 3, "d"]})),
        )
        .await;
    got.assert_problem(422, "item_ids[2]: expected a string, found 3");
}
