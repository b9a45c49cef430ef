//! The contract: every request example in `openapi.yaml` is served with a documented
//! response, every route the router has is documented, and the served document is the file.

use axum::http::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{app, spec};

/// `path` with its parameters filled in: the Open Inference Protocol's examples are for the
/// model `matrix`, version 1.
fn concrete(path: &str) -> String {
    path.replace("{model}", "matrix").replace("{version}", "1")
}

#[tokio::test]
async fn every_request_example_in_the_spec_is_answered_with_a_documented_200() {
    let app = app();
    let mut seen = 0;
    for (path, item) in spec()["paths"].as_object().unwrap() {
        // Operations with a body (not `POST /tables/reload`) document examples of it.
        let Some(post) = item
            .get("post")
            .filter(|post| post.get("requestBody").is_some())
        else {
            continue;
        };
        let examples = post["requestBody"]["content"]["application/json"]["examples"]
            .as_object()
            .unwrap_or_else(|| panic!("{path} has no request examples"));
        for (name, example) in examples {
            let got = app.post(&concrete(path), &example["value"]).await;
            assert_eq!(
                got.status,
                StatusCode::OK,
                "{path} example {name}: {}",
                got.json
            );
            seen += 1;
        }
    }
    assert!(seen >= 8, "only {seen} examples");
}

#[tokio::test]
async fn response_examples_in_the_spec_are_what_the_service_answers() {
    // Each documented 200 example is the answer to the request example of the same name.
    let app = app();
    for (path, item) in spec()["paths"].as_object().unwrap() {
        let Some(post) = item
            .get("post")
            .filter(|post| post.get("requestBody").is_some())
        else {
            continue;
        };
        let requests = &post["requestBody"]["content"]["application/json"]["examples"];
        let ok = &post["responses"]["200"]["content"]["application/json"];
        let answers: Vec<(&str, &Value)> = ok["examples"]
            .as_object()
            .map(|e| e.iter().map(|(k, v)| (k.as_str(), &v["value"])).collect())
            .unwrap_or_default();
        assert!(!answers.is_empty(), "{path} has no response example");
        for (name, want) in answers {
            let request = &requests[name]["value"];
            assert!(
                !request.is_null(),
                "{path}: no request example named {name}"
            );
            let got = app.post(&concrete(path), request).await;
            assert_eq!(&got.json, want, "{path} example {name}");
        }
    }
}

#[tokio::test]
async fn the_served_document_is_the_one_in_the_repository() {
    let got = app().request(Method::GET, "/openapi.yaml").await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.content_type, "application/yaml");
    // The helper parsed the YAML it got; it equals the document in the repository.
    assert_eq!(&got.json, spec());
    assert_eq!(spec()["openapi"], "3.1.0");
}

#[tokio::test]
async fn every_documented_path_exists_and_health_answers() {
    let app = app();
    for path in spec()["paths"].as_object().unwrap().keys() {
        let got = app.request(Method::PUT, path).await;
        assert_eq!(
            got.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{path} is not routed"
        );
    }
    let got = app.request(Method::GET, "/healthz").await;
    assert_eq!(got.json, serde_json::json!({"status": "ok"}));
}
