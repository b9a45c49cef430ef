//! Server-side tables: answers over tables against numpy's (`tests/fixtures/tables`, written
//! by `scripts/make_table_fixtures.py`), bad references, readiness while loading, reloads
//! (changed, broken and removed files; requests running across reloads), and the binary
//! stopping on a bad file and reloading on SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use simserve::Config;
use simserve::state::AppState;

use crate::helpers::{
    TestApp, app_and_state, assert_close, floats, index_rows, metric_value, spawn_binary,
};

fn fixtures(part: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tables")
        .join(part)
}

/// numpy's answers over the good tables.
fn reference() -> &'static Value {
    static REFERENCE: OnceLock<Value> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let text = std::fs::read_to_string(fixtures("reference.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    })
}

fn matrix_of(value: &Value) -> Vec<Vec<f64>> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        })
        .collect()
}

/// A fresh directory holding copies of the good tables named in `names`.
fn copy_of_good(names: &[&str]) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "tables-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for name in names {
        std::fs::copy(fixtures("good").join(name), dir.join(name)).unwrap();
    }
    dir
}

/// Replaces `dir/name` as users are told to: write a hidden file, then rename it into place.
fn replace(dir: &Path, name: &str, bytes: &[u8]) {
    let hidden = dir.join(format!(".{name}.tmp"));
    std::fs::write(&hidden, bytes).unwrap();
    std::fs::rename(hidden, dir.join(name)).unwrap();
}

/// The app with the tables of `dir`, loaded.
fn app_with_tables(dir: PathBuf, change: impl FnOnce(&mut Config)) -> (TestApp, AppState) {
    let (app, state) = app_and_state(|c| {
        c.tables = Some(dir);
        change(c);
    });
    state.tables.load().unwrap();
    (app, state)
}

fn good_app() -> TestApp {
    app_with_tables(fixtures("good"), |_| {}).0
}

async fn versions(app: &TestApp) -> serde_json::Map<String, Value> {
    let listing = app.request(Method::GET, "/tables").await;
    assert_eq!(listing.status, StatusCode::OK);
    listing.json["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_owned(), t["version"].clone()))
        .collect()
}

#[tokio::test]
async fn tables_are_listed_with_shape_stored_dtype_layout_ids_and_version() {
    let app = good_app();
    let got = app.request(Method::GET, "/tables").await;
    assert_eq!(got.status, StatusCode::OK);
    let tables = got.json["tables"].as_array().unwrap();
    let want = reference();
    assert_eq!(tables.len(), 10);
    for table in tables {
        let name = table["name"].as_str().unwrap();
        assert_eq!(table["stored_dtype"], want["stored_dtype"][name], "{name}");
        assert_eq!(table["dtype"], "float32");
        let in_place = want["in_place"].as_array().unwrap().contains(&json!(name));
        assert_eq!(table["in_place"], in_place, "{name}");
        assert_eq!(table["ids"], name == "items", "{name}");
        assert_eq!(table["version"].as_str().unwrap().len(), 16);
        assert!(table["last_error"].is_null());
        if let Some(values) = want["tables"].get(name) {
            assert_eq!(table["rows"], values.as_array().unwrap().len(), "{name}");
        }
    }
    let one = app.request(Method::GET, "/tables/model.emb.weight").await;
    assert_eq!(one.json["source"], "model.safetensors:emb.weight");
    assert_eq!(
        (one.json["rows"].as_u64(), one.json["dim"].as_u64()),
        (Some(5), Some(8))
    );
    app.request(Method::GET, "/tables/nope")
        .await
        .assert_problem(404, "there is no table \"nope\"");
    // A name no table could have is not repeated (markup, a line break).
    for path in [
        "/tables/%3Cscript%3Ex%3C%2Fscript%3E",
        "/tables/a%0d%0aSet-Cookie:x",
    ] {
        app.request(Method::GET, path).await.assert_problem(
            404,
            "there is no table of that name (GET /tables lists them)",
        );
    }
    // A name that is not UTF-8 once decoded is no table's either, answered as a problem.
    app.request(Method::GET, "/tables/%FF")
        .await
        .assert_problem(404, "no resource at this path");
    // Compressed, when asked, where it is written (off the runtime).
    let request = axum::http::Request::get("/tables")
        .header(axum::http::header::ACCEPT_ENCODING, "zstd")
        .body(axum::body::Body::empty())
        .unwrap();
    let response = app.raw(request).await;
    assert_eq!(
        response.headers()[axum::http::header::CONTENT_ENCODING],
        "zstd"
    );
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let inflated: Value = serde_json::from_slice(&zstd::decode_all(&bytes[..]).unwrap()).unwrap();
    assert_eq!(inflated, got.json);
}

#[tokio::test]
async fn a_user_against_the_item_table_gets_numpys_top_items_with_their_ids_and_versions() {
    let app = good_app();
    let want = reference();
    let got = app
        .post(
            "/similarity/user-item",
            &json!({"users": {"table": "users"}, "items": {"table": "items"}, "top_k": 3}),
        )
        .await;
    let body = got.ok();
    let top = index_rows(&want["top3_users_items"]);
    assert_eq!(index_rows(&body["indices"]), top);
    let cosine = matrix_of(&want["cosine_users_items"]);
    let (_, scores) = floats(&body["scores"]);
    let expected: Vec<f64> = top
        .iter()
        .enumerate()
        .flat_map(|(u, row)| row.iter().map(|&i| cosine[u][i]).collect::<Vec<_>>())
        .collect();
    assert_close(&scores, &expected, 2e-5);
    let ids = want["item_ids"].as_array().unwrap();
    let listed: Vec<Vec<Value>> = top
        .iter()
        .map(|row| row.iter().map(|&i| ids[i].clone()).collect())
        .collect();
    assert_eq!(body["items"], json!(listed));
    let served = versions(&app).await;
    assert_eq!(body["tables"]["users"], served["users"]);
    assert_eq!(body["tables"]["items"], served["items"]);
}

#[tokio::test]
async fn chosen_rows_and_ids_score_like_numpy_and_mix_with_inline_rows() {
    let app = good_app();
    let want = reference();
    let cosine = matrix_of(&want["cosine_users_items"]);
    let got = app
        .post(
            "/similarity/matrix",
            &json!({"a": {"table": "users", "rows": [4, 0, 4]},
                    "b": {"table": "items", "ids": ["sku-009", "sku-003", "sku-001"]}}),
        )
        .await;
    let (shape, values) = floats(&got.ok()["matrix"]);
    assert_eq!(shape, vec![3, 3]);
    let expected: Vec<f64> = [4, 0, 4]
        .iter()
        .flat_map(|&u| [9, 3, 1].map(|i| cosine[u][i]))
        .collect();
    assert_close(&values, &expected, 2e-5);
    assert_eq!(values[1], 0.0, "item 3 is a zero vector");

    // Inline rows against a table: the user's own vector, sent as JSON.
    let users = matrix_of(&want["tables"]["users"]);
    let got = app
        .post(
            "/similarity/pairwise",
            &json!({"a": [users[2].clone()], "b": {"table": "items", "rows": [0, 5]}}),
        )
        .await;
    let (_, values) = floats(&got.ok()["scores"]);
    assert_close(&values, &[cosine[2][0], cosine[2][5]], 2e-5);
    assert_eq!(
        got.json["tables"],
        json!({"items": versions(&app).await["items"]})
    );

    // Converted tables: float64, float16, bfloat16, big-endian and Fortran order.
    for (name, metric, key) in [
        ("f64", "dot", "dot_f64"),
        ("model.emb.weight", "euclidean", "euclidean_emb"),
    ] {
        let got = app
            .post(
                "/similarity/matrix",
                &json!({"a": {"table": name}, "metric": metric}),
            )
            .await;
        let (_, values) = floats(&got.ok()["matrix"]);
        let expected: Vec<f64> = matrix_of(&want[key]).concat();
        assert_close(&values, &expected, 1e-4);
    }
    for name in ["f16", "big", "fortran", "model.half", "model.brain"] {
        let rows = matrix_of(&want["tables"][name]);
        let got = app
            .post(
                "/similarity/matrix",
                &json!({"a": {"table": name}, "b": rows.clone(), "metric": "dot"}),
            )
            .await;
        let (_, values) = floats(&got.ok()["matrix"]);
        let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
        let expected: Vec<f64> = rows
            .iter()
            .flat_map(|x| rows.iter().map(|y| dot(x, y)).collect::<Vec<_>>())
            .collect();
        assert_close(&values, &expected, 1e-4);
    }
}

#[tokio::test]
async fn neighbours_in_a_table_with_ids_list_the_ids_and_exclusions_may_name_them() {
    let app = good_app();
    let got = app
        .post(
            "/similarity/matrix",
            &json!({"a": {"table": "items", "rows": [0]}, "b": {"table": "items"}, "top_k": 2}),
        )
        .await;
    let body = got.ok();
    let first = index_rows(&body["indices"])[0].clone();
    assert_eq!(first[0], 0);
    assert_eq!(body["ids"][0][0], "sku-000");
    assert_eq!(body["ids"][0][1], format!("sku-{:03}", first[1]));

    let top = index_rows(&reference()["top3_users_items"]);
    let skip = format!("sku-{:03}", top[0][0]);
    let got = app
        .post(
            "/similarity/user-item",
            &json!({"users": {"table": "users", "rows": [0]}, "items": {"table": "items"},
                    "top_k": 2, "exclude": [[skip]]}),
        )
        .await;
    assert_eq!(
        index_rows(&got.ok()["indices"]),
        vec![top[0][1..3].to_vec()]
    );
}

#[tokio::test]
async fn a_threshold_listing_a_tables_ids_is_limited_by_what_it_selects_not_refused_up_front() {
    // 10 items against themselves could list 100 ids, over this limit of 50; a threshold
    // that selects each row itself lists 10 (the zero row none) and is answered.
    let (app, _) = app_with_tables(fixtures("good"), |c| c.max_output_elements = 50);
    let got = app
        .post(
            "/similarity/matrix",
            &json!({"a": {"table": "items"}, "threshold": 0.99}),
        )
        .await;
    let body = got.ok();
    let ids = body["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 10);
    for (i, row) in ids.iter().enumerate() {
        let listed: Vec<&str> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap())
            .collect();
        assert!(
            listed.len() <= 1 && listed.iter().all(|&id| id == format!("sku-{i:03}")),
            "{i}: {listed:?}"
        );
    }
    // A threshold that selects every pair holds more than the limit allows.
    let got = app
        .post(
            "/similarity/matrix",
            &json!({"a": {"table": "items"}, "threshold": -1.0}),
        )
        .await;
    got.assert_problem(
        422,
        "the selection holds more than 50 entries, as many as the output limit allows with \
         their ids (a number for every 8 bytes of the longest); add top_k or make threshold \
         stricter",
    );
}

#[tokio::test]
async fn excluding_by_id_a_row_chosen_twice_is_refused_rather_than_half_excluded() {
    let app = good_app();
    let got = app
        .post(
            "/similarity/user-item",
            &json!({"users": {"table": "users", "rows": [0]},
                    "items": {"table": "items", "rows": [1, 5, 2, 5]},
                    "top_k": 1, "exclude": [["sku-005"]]}),
        )
        .await;
    got.assert_problem(
        422,
        "exclude[0][0]: the id \"sku-005\" is held by more than one item (positions 1 and 3)",
    );
    let got = app
        .post(
            "/similarity/user-item",
            &json!({"users": {"table": "users", "rows": [0]},
                    "items": {"table": "items", "rows": [1, 5, 2]},
                    "top_k": 3, "exclude": [["sku-005"]]}),
        )
        .await;
    let mut listed: Vec<String> = got.ok()["items"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, ["sku-001", "sku-002"]);
}

#[tokio::test]
async fn bad_references_are_422s_that_name_the_field() {
    let (app, _) = app_with_tables(fixtures("good"), |c| c.max_body_bytes = 4096);
    let items = json!({"table": "items"});
    for (body, detail) in [
        (
            json!({"a": {"table": "nope"}}),
            "a.table: there is no table \"nope\" (GET /tables lists them)",
        ),
        (
            json!({"a": {"table": "../etc/passwd"}}),
            "a.table: there is no table of that name",
        ),
        (
            json!({"a": {"table": "users", "rows": [1, 6]}}),
            "a.rows[1]: row 6 is out of range for table \"users\" of 6 rows",
        ),
        (
            json!({"a": {"table": "items", "ids": ["sku-001", "u-9", "u-10"]}}),
            "a.ids[1]: table \"items\" has no row with the id \"u-9\"",
        ),
        (
            json!({"a": {"table": "users", "ids": ["u3"]}}),
            "a.ids: table \"users\" has no ids (they come from users.ids.txt)",
        ),
        (
            json!({"a": {"table": "users"}, "b": [[1.0, 2.0, 3.0]]}),
            "b: vectors have dimension 3, but those of a have dimension 8",
        ),
        (
            json!({"a": {"table": "empty"}}),
            "a: table \"empty\" has no rows",
        ),
        (
            json!({"a": {"table": "users", "rows": vec![0; 200]}}),
            "a.rows: chooses 200 rows of 8 values, 1600 values in all, more than the 1024",
        ),
    ] {
        app.post("/similarity/matrix", &body)
            .await
            .assert_problem(422, detail);
    }
    app.post("/similarity/pairwise", &json!({"pairs": items}))
        .await
        .assert_problem(422, "pairs: takes nested arrays or a base64 tensor");
    app.post(
        "/similarity/user-item",
        &json!({"users": {"table": "users"}, "items": items, "top_k": 1,
                "item_ids": vec!["x"; 10]}),
    )
    .await
    .assert_problem(
        422,
        "item_ids: the items come with the ids of table \"items\"",
    );
    app.post(
        "/similarity/user-item",
        &json!({"users": {"table": "users", "rows": [0]}, "items": items, "top_k": 1,
                "exclude": [["sku-404"]]}),
    )
    .await
    .assert_problem(422, "exclude[0][0]: no item has the id \"sku-404\"");
    app.post(
        "/similarity/user-item",
        &json!({"users": [[1.0, 0.0]], "items": [[1.0, 0.0]], "top_k": 1,
                "exclude": [["sku-1"]]}),
    )
    .await
    .assert_problem(
        422,
        "exclude[0][0]: names an item by id, but the items have no ids",
    );
}

#[tokio::test]
async fn readiness_waits_for_the_tables_and_references_meanwhile_get_503() {
    let (app, state) = app_and_state(|c| c.tables = Some(fixtures("good")));
    let ready = app.request(Method::GET, "/readyz").await;
    ready.assert_problem(503, "the server's tables are still loading");
    assert_eq!(ready.json["type"], "urn:simserve:problem:tables-loading");
    let early = app
        .post("/similarity/matrix", &json!({"a": {"table": "users"}}))
        .await;
    early.assert_problem(503, "the server's tables are still loading");
    assert_eq!(early.headers["retry-after"], "1");
    app.post("/similarity/matrix", &json!({"a": [[1.0, 0.0]]}))
        .await
        .ok();

    state.tables.load().unwrap();
    assert_eq!(
        app.request(Method::GET, "/readyz").await.status,
        StatusCode::OK
    );
    app.post("/similarity/matrix", &json!({"a": {"table": "users"}}))
        .await
        .ok();
}

#[tokio::test]
async fn a_reload_answers_when_done_however_short_the_request_timeout() {
    // A table of 1,000,000 values (4 MB) to read, check and hash takes the reload longer
    // than this timeout; the reload, which runs to its end once begun, still answers.
    let dir = copy_of_good(&["users.npy"]);
    let (app, _) = app_with_tables(dir.clone(), |c| {
        c.request_timeout = std::time::Duration::from_millis(1)
    });
    let (rows, dim) = (1000, 1000);
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dim}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    npy.extend(std::iter::repeat_n(0.5f32.to_le_bytes(), rows * dim).flatten());
    replace(&dir, "large.npy", &npy);
    let reload = app.request(Method::POST, "/tables/reload").await;
    assert_eq!(reload.status, StatusCode::OK, "{}", reload.json);
    assert_eq!(reload.json["changed"], json!(["large"]));
}

#[tokio::test]
async fn a_reload_swaps_changed_files_keeps_a_broken_ones_last_version_and_drops_removed_ones() {
    let dir = copy_of_good(&["users.npy", "items.npy", "items.ids.txt"]);
    let (app, _) = app_with_tables(dir.clone(), |_| {});
    let before = versions(&app).await;

    let reload = app.request(Method::POST, "/tables/reload").await;
    assert_eq!(
        reload.json,
        json!({"changed": [], "removed": [], "errors": []})
    );

    // Equal content, equal version: a rewritten file with the same bytes changes nothing.
    replace(
        &dir,
        "users.npy",
        &std::fs::read(fixtures("good/users.npy")).unwrap(),
    );
    let reload = app.request(Method::POST, "/tables/reload").await;
    assert_eq!(reload.json["changed"], json!([]));
    assert_eq!(versions(&app).await, before);

    replace(
        &dir,
        "users.npy",
        &std::fs::read(fixtures("good/fortran.npy")).unwrap(),
    );
    let reload = app.request(Method::POST, "/tables/reload").await;
    assert_eq!(reload.json["changed"], json!(["users"]));
    let users = app.request(Method::GET, "/tables/users").await.json;
    assert_ne!(users["version"], before["users"]);
    assert_eq!(
        (users["rows"].as_u64(), users["in_place"].as_bool()),
        (Some(4), Some(false))
    );

    replace(&dir, "users.npy", b"not a table");
    let reload = app.request(Method::POST, "/tables/reload").await;
    assert_eq!(reload.json["errors"][0]["file"], "users.npy");
    let kept = app.request(Method::GET, "/tables/users").await.json;
    assert_eq!(kept["version"], users["version"]);
    assert!(
        kept["last_error"]
            .as_str()
            .unwrap()
            .starts_with("not a readable .npy file")
    );
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(&metrics, "simserve_table_reloads_total{result=\"error\"}"),
        1.0
    );
    assert_eq!(
        metric_value(&metrics, "simserve_table_reloads_total{result=\"ok\"}"),
        3.0
    );
    assert_eq!(
        metric_value(&metrics, "simserve_table_rows{table=\"users\"}"),
        4.0
    );

    std::fs::remove_file(dir.join("items.npy")).unwrap();
    let reload = app.request(Method::POST, "/tables/reload").await;
    assert_eq!(reload.json["removed"], json!(["items"]));
    app.post("/similarity/matrix", &json!({"a": {"table": "items"}}))
        .await
        .assert_problem(422, "a.table: there is no table \"items\"");
}

#[tokio::test]
async fn a_fifo_or_a_dangling_ids_link_fails_its_table_in_the_reload_answer_and_the_listing() {
    let dir = copy_of_good(&["users.npy", "items.npy", "items.ids.txt"]);
    let (app, _) = app_with_tables(dir.clone(), |_| {});
    let before = versions(&app).await;
    std::fs::remove_file(dir.join("users.npy")).unwrap();
    rustix::fs::mkfifoat(rustix::fs::CWD, dir.join("users.npy"), 0o600.into()).unwrap();
    std::fs::remove_file(dir.join("items.ids.txt")).unwrap();
    std::os::unix::fs::symlink("gone.txt", dir.join("items.ids.txt")).unwrap();

    let reload = app.request(Method::POST, "/tables/reload").await;
    assert_eq!(reload.status, StatusCode::OK);
    assert_eq!(reload.json["changed"], json!([]), "{}", reload.json);
    assert_eq!(reload.json["removed"], json!([]), "{}", reload.json);
    let errors = reload.json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{}", reload.json);
    let listing = app.request(Method::GET, "/tables").await.json;
    assert_eq!(listing["errors"], reload.json["errors"]);
    assert_eq!(versions(&app).await, before);
    for (table, reason) in [
        ("users", "not a regular file (a FIFO)"),
        ("items", "items.ids.txt: No such file or directory"),
    ] {
        let kept = app
            .request(Method::GET, &format!("/tables/{table}"))
            .await
            .json;
        let last_error = kept["last_error"].as_str().unwrap();
        assert!(last_error.starts_with(reason), "{table}: {last_error}");
    }
    let items = app.request(Method::GET, "/tables/items").await.json;
    assert_eq!(items["ids"], true);
    let metrics = app.metrics().await;
    assert_eq!(
        metric_value(&metrics, "simserve_table_reloads_total{result=\"error\"}"),
        1.0
    );
}

/// Replaces `dir/name` with a sparse file of 4 TiB (far more than any test machine's
/// memory) that starts with `head`.
fn replace_with_4_tib(dir: &Path, name: &str, head: &[u8]) -> u64 {
    const LEN: u64 = 1 << 42;
    let hidden = dir.join(format!(".{name}.tmp"));
    std::fs::write(&hidden, head).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&hidden)
        .unwrap()
        .set_len(LEN)
        .unwrap();
    std::fs::rename(hidden, dir.join(name)).unwrap();
    LEN
}

#[tokio::test]
async fn a_file_larger_than_the_memory_left_is_refused_unread_and_the_last_version_serves() {
    let dir = copy_of_good(&["users.npy", "items.npy", "items.ids.txt"]);
    let (app, _) = app_with_tables(dir.clone(), |_| {});
    let before = versions(&app).await;
    // A real header for (2^30, 1024) float32, whose data the sparse file then holds.
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1073741824, 1024), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let padded = format!("{header:<117}\n");
    npy.extend_from_slice(&u16::try_from(padded.len()).unwrap().to_le_bytes());
    npy.extend_from_slice(padded.as_bytes());
    let len = replace_with_4_tib(&dir, "users.npy", &npy);
    replace_with_4_tib(&dir, "items.ids.txt", b"sku-1\n");

    let reload = app.request(Method::POST, "/tables/reload").await;
    let mut files: Vec<&str> = reload.json["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["file"].as_str().unwrap())
        .collect();
    files.sort_unstable();
    assert_eq!(files, ["items.npy", "users.npy"], "{}", reload.json);
    // The ids are counted with the norms before they are read: their file's text twice,
    // and 8 bytes a row (the items have 10 rows), beside 12 bytes a row of norms.
    let ids = 2 * len + 10 * 20;
    for (table, prefix) in [
        (
            "users",
            format!("reading it whole: {len} bytes (4.0 TiB) of memory needed, and "),
        ),
        (
            "items",
            format!("its norms and ids: {ids} bytes (8.0 TiB) of memory needed, and "),
        ),
    ] {
        let kept = app
            .request(Method::GET, &format!("/tables/{table}"))
            .await
            .json;
        assert_eq!(kept["version"], before[table], "{table}");
        let reason = kept["last_error"].as_str().unwrap();
        assert!(reason.starts_with(&prefix), "{reason}");
        assert!(reason.ends_with("of it kept for serving)"), "{reason}");
    }
    let answer = app
        .post(
            "/similarity/user-item",
            &json!({"users": {"table": "users"}, "items": {"table": "items"}, "top_k": 1}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json);
    assert_eq!(answer.json["tables"]["users"], before["users"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_running_across_reloads_never_see_two_versions() {
    let dir = copy_of_good(&[]);
    let versions_bytes = [
        std::fs::read(fixtures("good/users.npy")).unwrap(),
        std::fs::read(fixtures("good/items.npy")).unwrap(),
    ];
    replace(&dir, "t.npy", &versions_bytes[0]);
    let (app, state) = app_with_tables(dir.clone(), |_| {});
    let query = json!({"a": [[0.5, -1.0, 0.25, 2.0, 0.0, 1.0, -0.5, 0.75]], "b": {"table": "t"}});

    // The answer each version gives, whole.
    let mut answers = Vec::new();
    for bytes in &versions_bytes {
        replace(&dir, "t.npy", bytes);
        state.reload_tables();
        let got = app.post("/similarity/matrix", &query).await;
        answers.push(got.ok().clone());
    }
    assert_ne!(answers[0]["tables"], answers[1]["tables"]);

    let app = std::sync::Arc::new(app);
    // Files are replaced while reloads run (a reload may read either file), and reloads
    // swap catalogs while requests run, until every reader has seen both versions.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let running = {
        let stop = stop.clone();
        move || !stop.load(std::sync::atomic::Ordering::Relaxed)
    };
    let swapper = {
        let (dir, running) = (dir.clone(), running.clone());
        tokio::task::spawn_blocking(move || {
            let mut round = 0;
            while running() {
                replace(&dir, "t.npy", &versions_bytes[round % 2]);
                round += 1;
            }
        })
    };
    let reloader = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || {
            let mut reloads = 0usize;
            while running() {
                state.reload_tables();
                reloads += 1;
            }
            reloads
        })
    };
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (app, query, answers) = (app.clone(), query.clone(), answers.clone());
        readers.push(tokio::spawn(async move {
            let mut seen = [0usize; 2];
            // Each answer is whole; go on until both versions were served, or give up.
            for _ in 0..2000 {
                let got = app.post("/similarity/matrix", &query).await;
                let body = got.ok();
                let which = answers
                    .iter()
                    .position(|a| a == body)
                    .unwrap_or_else(|| panic!("an answer of neither version: {body}"));
                seen[which] += 1;
                if seen[0] > 0 && seen[1] > 0 {
                    break;
                }
                tokio::task::yield_now().await;
            }
            seen
        }));
    }
    let mut seen = Vec::new();
    for reader in readers {
        seen.push(reader.await.unwrap());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.await.unwrap();
    let reloads = reloader.await.unwrap();
    for seen in &seen {
        assert!(
            seen[0] > 0 && seen[1] > 0,
            "a reader was served one version only ({seen:?}, {reloads} reloads): the reloads \
             did not run while it read"
        );
    }
}

#[test]
fn a_table_that_fails_to_load_stops_the_binary_naming_the_file() {
    let dir = fixtures("bad/nan");
    let (mut process, _, lines) = spawn_binary(&["--tables", dir.to_str().unwrap()]);
    let status = process.0.wait().unwrap();
    assert!(!status.success());
    let log: String = lines.map_while(Result::ok).collect::<Vec<_>>().join("\n");
    assert!(log.contains("t.npy"), "{log}");
    assert!(log.contains("row 1, column 2: the value is NaN"), "{log}");
}

#[tokio::test]
async fn sighup_storms_reload_the_tables_while_the_binary_keeps_serving() {
    let dir = copy_of_good(&["users.npy"]);
    let (process, addr, lines) = spawn_binary(&["--tables", dir.to_str().unwrap()]);
    // Its log is read as it comes, so that a full pipe never stalls the server.
    std::thread::spawn(move || lines.for_each(drop));
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client.get(url("/readyz")).send().await.unwrap().status() != 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "the tables never loaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Requests go on while the signals come, and every one is answered.
    let query = json!({"a": {"table": "users", "rows": [0]}, "b": {"table": "users"}});
    let serving = {
        let (client, url) = (client.clone(), url("/similarity/matrix"));
        tokio::spawn(async move {
            let mut answered = 0;
            while answered < 200 {
                let got = client.post(&url).json(&query).send().await.unwrap();
                assert_eq!(got.status(), 200, "{}", got.text().await.unwrap());
                answered += 1;
            }
        })
    };
    let pid = rustix::process::Pid::from_raw(process.0.id() as i32).unwrap();
    for _ in 0..50 {
        rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
        tokio::task::yield_now().await;
    }
    serving.await.unwrap();
    replace(
        &dir,
        "users.npy",
        &std::fs::read(fixtures("good/items.npy")).unwrap(),
    );
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got: Value = client
            .get(url("/tables/users"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if got["rows"] == 10 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no reload: {got}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let health = client.get(url("/readyz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = crate::live::metrics_text(addr).await;
    assert_eq!(
        metric_value(&metrics, "simserve_table_reloads_total{result=\"error\"}"),
        0.0,
        "a reload in the storm failed:\n{metrics}"
    );
}
