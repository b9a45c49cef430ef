//! One test over a real socket: binding port 0, keep-alive across a bad request.

use serde_json::json;
use simserve::{Application, Config};

#[tokio::test]
async fn the_service_binds_a_free_port_and_keeps_serving_after_a_bad_request() {
    let config = Config::with_addr("127.0.0.1:0".parse().unwrap());
    let app = Application::build(&config).await.unwrap();
    let addr = app.local_addr().unwrap();
    assert_ne!(addr.port(), 0);
    let server = tokio::spawn(app.run_until_stopped());

    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    let bad = client
        .post(format!("{base}/similarity/pairwise"))
        .header("content-type", "application/json")
        .body("{\"a\": [[1, 2], [3]], \"b\": [[1, 2]]}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    assert_eq!(bad.headers()["content-type"], "application/problem+json");

    let good = client
        .post(format!("{base}/similarity/pairwise"))
        .json(&json!({"a": [[1, 0]], "b": [[0, 1]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(good.status(), 200);
    let body: serde_json::Value = good.json().await.unwrap();
    assert_eq!(body["scores"], json!([0.0]));
    server.abort();
}
