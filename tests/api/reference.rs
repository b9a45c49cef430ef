//! Answers checked against `tests/fixtures/reference.json`: values computed independently
//! with numpy and scikit-learn (float64) by `scripts/make_fixtures.py`, each with its
//! tolerance from the accuracy contract.

use std::collections::HashSet;

use serde_json::Value;

use crate::helpers::{app, floats, index_rows};

fn cases() -> Vec<Value> {
    let text = include_str!("../fixtures/reference.json");
    let fixtures: Value = serde_json::from_str(text).unwrap();
    fixtures["cases"].as_array().unwrap().clone()
}

fn numbers(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn check_dense(name: &str, expect: &Value, body: &Value) {
    let field = expect["field"].as_str().unwrap();
    let want_shape: Vec<usize> = numbers(&expect["shape"])
        .iter()
        .map(|&d| d as usize)
        .collect();
    let body_shape: Vec<usize> = numbers(&body["shape"])
        .iter()
        .map(|&d| d as usize)
        .collect();
    assert_eq!(body_shape, want_shape, "{name}: shape");
    let (shape, got) = floats(&body[field]);
    assert_eq!(shape, want_shape, "{name}: tensor shape");
    let (want, tol) = (numbers(&expect["values"]), numbers(&expect["tol"]));
    assert_eq!(got.len(), want.len(), "{name}");
    for i in 0..want.len() {
        let error = (f64::from(got[i]) - want[i]).abs();
        assert!(
            error <= tol[i],
            "{name}: element {i}: got {}, want {} (tolerance {})",
            got[i],
            want[i],
            tol[i]
        );
    }
}

/// Score rows of a neighbours body, JSON or base64, rectangular or ragged.
fn score_rows(body: &Value, sets: usize, n: usize, batched: bool) -> Vec<Vec<f32>> {
    let scores = &body["scores"];
    if scores.is_object() {
        let (shape, values) = floats(scores);
        let width = *shape.last().unwrap();
        assert_eq!(shape.iter().product::<usize>(), sets * n * width);
        return values.chunks(width.max(1)).map(<[f32]>::to_vec).collect();
    }
    let rows: Vec<&Value> = if batched {
        scores
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s.as_array().unwrap())
            .collect()
    } else {
        scores.as_array().unwrap().iter().collect()
    };
    rows.into_iter().map(|row| floats(row).1).collect()
}

fn check_neighbours(name: &str, expect: &Value, body: &Value) {
    let dims: Vec<usize> = numbers(&expect["reference_shape"])
        .iter()
        .map(|&d| d as usize)
        .collect();
    let (sets, n, m) = (dims[0], dims[1], dims[2]);
    let reference = numbers(&expect["reference"]);
    let tol = numbers(&expect["tol"]);
    let similarity = expect["similarity"].as_bool().unwrap();
    let k = expect["k"].as_u64().map(|k| k as usize);
    let threshold = expect["threshold"].as_f64();
    let exclude_self = expect["exclude_self"].as_bool().unwrap();
    let exclude: Option<Vec<Vec<usize>>> = expect["exclude"]
        .as_array()
        .map(|_| index_rows(&expect["exclude"]));
    // Every batched fixture has several sets.
    let batched = sets > 1;

    let index_sets: Vec<Vec<Vec<usize>>> = if batched {
        body["indices"]
            .as_array()
            .unwrap()
            .iter()
            .map(index_rows)
            .collect()
    } else {
        vec![index_rows(&body["indices"])]
    };
    let scores = score_rows(body, sets, n, batched);
    assert_eq!(index_sets.len(), sets, "{name}: sets");

    let mut widths = HashSet::new();
    for (s, rows) in index_sets.iter().enumerate() {
        assert_eq!(rows.len(), n, "{name}: rows of set {s}");
        for (i, got) in rows.iter().enumerate() {
            let at = |j: usize| (s * n + i) * m + j;
            let mut want: Vec<usize> = (0..m)
                .filter(|&j| !(exclude_self && j == i))
                .filter(|&j| exclude.as_ref().is_none_or(|e| !e[i].contains(&j)))
                .filter(|&j| {
                    threshold.is_none_or(|t| {
                        if similarity {
                            reference[at(j)] >= t
                        } else {
                            reference[at(j)] <= t
                        }
                    })
                })
                .collect();
            want.sort_by(|&x, &y| {
                let (a, b) = (reference[at(x)], reference[at(y)]);
                let order = if similarity {
                    b.total_cmp(&a)
                } else {
                    a.total_cmp(&b)
                };
                order.then(x.cmp(&y))
            });
            if let Some(k) = k {
                want.truncate(k);
            }
            let got_scores = &scores[s * n + i];
            assert_eq!(
                got.len(),
                want.len(),
                "{name}: set {s} row {i}: {got:?} vs {want:?}"
            );
            assert_eq!(
                got_scores.len(),
                got.len(),
                "{name}: scores of set {s} row {i}"
            );
            let unique: HashSet<_> = got.iter().collect();
            assert_eq!(unique.len(), got.len(), "{name}: repeated index in row {i}");
            for (p, (&j, &score)) in got.iter().zip(got_scores).enumerate() {
                let w = want[p];
                let score = f64::from(score);
                // The p-th nearest score, and the score of the index actually listed, both
                // agree with the reference; near-ties may swap places, nothing else may.
                assert!(
                    (score - reference[at(w)]).abs() <= tol[at(w)],
                    "{name}: set {s} row {i} rank {p}: score {score}, reference {}",
                    reference[at(w)]
                );
                assert!(
                    (score - reference[at(j)]).abs() <= tol[at(j)],
                    "{name}: set {s} row {i} rank {p}: index {j} scores {score}, reference {}",
                    reference[at(j)]
                );
                assert!(!(exclude_self && j == i), "{name}: row {i} lists itself");
                if let Some(e) = &exclude {
                    assert!(!e[i].contains(&j), "{name}: row {i} lists excluded {j}");
                }
            }
            widths.insert(got.len());
        }
    }
    if widths.len() == 1 {
        let width = *widths.iter().next().unwrap();
        let mut shape = vec![n, width];
        if batched {
            shape.insert(0, sets);
        }
        assert_eq!(
            numbers(&body["shape"]),
            shape.iter().map(|&d| d as f64).collect::<Vec<_>>(),
            "{name}"
        );
    } else {
        assert!(
            body.get("shape").is_none(),
            "{name}: ragged rows have no shape"
        );
    }
    if let Some(ids) = expect["item_ids"].as_array() {
        let items = body["items"].as_array().expect("items");
        assert_eq!(items.len(), index_sets[0].len(), "{name}: rows of ids");
        for (row, indices) in items.iter().zip(&index_sets[0]) {
            let want: Vec<&Value> = indices.iter().map(|&j| &ids[j]).collect();
            assert_eq!(
                row.as_array().unwrap().iter().collect::<Vec<_>>(),
                want,
                "{name}: ids"
            );
        }
    }
}

#[tokio::test]
async fn every_reference_case_agrees_with_numpy_and_scikit_learn_within_tolerance() {
    let app = app();
    let cases = cases();
    assert!(cases.len() >= 40);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let path = case["path"].as_str().unwrap();
        let response = app.post(path, &case["request"]).await;
        assert_eq!(response.status, 200, "{name}: {}", response.json);
        let expect = &case["expect"];
        let metric = case["request"]
            .get("metric")
            .and_then(Value::as_str)
            .unwrap_or("cosine");
        assert_eq!(response.json["metric"], metric, "{name}");
        match expect["kind"].as_str().unwrap() {
            "dense" => check_dense(name, expect, &response.json),
            _ => check_neighbours(name, expect, &response.json),
        }
    }
}
