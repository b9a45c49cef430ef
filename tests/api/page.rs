//! The try-it page at `/`: served from the binary with its script and style sheet, under a
//! strict Content-Security-Policy, small, loading nothing from elsewhere, open under
//! `--api-keys`. (tests/browser drives it in a real browser.)

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode, header};
use simserve::api::page::CONTENT_SECURITY_POLICY;

use crate::helpers::{TestApp, TestResponse, app, app_with, small_body};

/// The page's files: (path, content type).
const FILES: [(&str, &str); 3] = [
    ("/", "text/html; charset=utf-8"),
    ("/assets/app.js", "text/javascript; charset=utf-8"),
    ("/assets/app.css", "text/css; charset=utf-8"),
];

/// The test hooks automation relies on.
const TEST_IDS: [&str; 9] = [
    "input-a",
    "input-b",
    "metric",
    "operation",
    "top-k",
    "compute",
    "heatmap",
    "result",
    "error",
];

async fn text(app: &TestApp, path: &str) -> (TestResponse, String) {
    let got = app.request(Method::GET, path).await;
    let body = got.json.as_str().unwrap_or_default().to_owned();
    (got, body)
}

/// The values of `attribute="…"` in `html`.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let pattern = format!(" {attribute}=\"");
    html.match_indices(&pattern)
        .filter_map(|(at, _)| {
            let rest = &html[at + pattern.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

#[tokio::test]
async fn the_page_and_its_files_are_served_with_their_types_under_the_policy() {
    let app = app();
    for (path, content_type) in FILES {
        let (got, body) = text(&app, path).await;
        assert_eq!(got.status, StatusCode::OK, "{path}");
        assert_eq!(got.content_type, content_type, "{path}");
        assert_eq!(
            got.headers[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(got.headers[header::CACHE_CONTROL], "no-cache");
        assert_eq!(got.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(body.len() > 1000, "{path} is {} bytes", body.len());
    }
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(CONTENT_SECURITY_POLICY.contains(directive), "{directive}");
    }
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
}

#[tokio::test]
async fn the_page_with_its_files_stays_under_60_kb() {
    let app = app();
    let mut total = 0;
    for (path, _) in FILES {
        total += text(&app, path).await.1.len();
    }
    assert!(total < 60 * 1024, "the page is {total} bytes");
}

#[tokio::test]
async fn the_page_loads_only_its_two_files_and_has_nothing_inline() {
    let app = app();
    let (_, html) = text(&app, "/").await;
    let (_, script) = text(&app, "/assets/app.js").await;
    let (_, style) = text(&app, "/assets/app.css").await;
    for (name, body) in [("page", &html), ("script", &script), ("style", &style)] {
        for external in ["http://", "https://", "eval(", "new Function"] {
            assert!(!body.contains(external), "the {name} holds {external:?}");
        }
    }
    // The style sheet fetches no other sheet, font or image.
    for fetch in ["@import", "url(", "@font-face"] {
        assert!(!style.contains(fetch), "the style sheet holds {fetch:?}");
    }
    // Every reference is one of the page's files, the contract, or a data URL.
    let mut references: BTreeSet<&str> = attribute_values(&html, "src").into_iter().collect();
    references.extend(attribute_values(&html, "href"));
    let want = BTreeSet::from(["assets/app.js", "assets/app.css", "openapi.yaml", "data:,"]);
    assert_eq!(references, want);
    // The policy refuses inline code and style: none is written.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains("<script src=\"assets/app.js\" defer></script>"));
    assert!(!html.contains("<style") && !html.contains(" style="));
    let handlers = html.match_indices(" on").filter(|(at, _)| {
        let rest = &html[at + 3..];
        let name = rest.find(|c: char| !c.is_ascii_lowercase()).unwrap_or(0);
        name > 0 && rest[name..].starts_with('=')
    });
    assert_eq!(handlers.count(), 0, "inline event handlers");
    assert!(!script.contains("innerHTML") && !script.contains("setAttribute('style'"));
}

#[tokio::test]
async fn every_test_hook_and_every_id_the_script_names_is_on_the_page() {
    let app = app();
    let (_, html) = text(&app, "/").await;
    let (_, script) = text(&app, "/assets/app.js").await;
    let test_ids = attribute_values(&html, "data-testid");
    for id in TEST_IDS {
        assert!(test_ids.contains(&id), "no data-testid={id:?}");
    }
    let ids: BTreeSet<&str> = attribute_values(&html, "id").into_iter().collect();
    let named: Vec<&str> = script
        .match_indices("$('")
        .filter_map(|(at, _)| script[at + 3..].split('\'').next())
        .collect();
    assert!(named.len() > 20, "{named:?}");
    for id in named {
        assert!(ids.contains(id), "the script uses #{id}, not on the page");
    }
}

#[tokio::test]
async fn every_form_control_has_a_label() {
    let (_, html) = text(&app(), "/").await;
    let labelled: BTreeSet<&str> = attribute_values(&html, "for").into_iter().collect();
    for tag in ["<input ", "<select ", "<textarea "] {
        for (at, _) in html.match_indices(tag) {
            let element = &html[at..at + html[at..].find('>').unwrap_or(0)];
            let id = attribute_values(element, "id");
            assert!(
                id.first().is_some_and(|id| labelled.contains(id)),
                "no label for {element}"
            );
        }
    }
}

#[tokio::test]
async fn with_api_keys_the_page_opens_without_a_key_and_the_api_still_needs_one() {
    let app = app_with(|c| c.api_keys = vec!["k".into()]);
    for (path, _) in FILES {
        assert_eq!(app.request(Method::GET, path).await.status, StatusCode::OK);
    }
    let got = app.post("/similarity/pairwise", &small_body()).await;
    assert_eq!(got.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.request(Method::GET, "/tables").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn the_page_takes_get_only_and_other_paths_under_assets_are_not_found() {
    let app = app();
    let got = app.request(Method::POST, "/").await;
    got.assert_problem(405, "this method is not allowed");
    let got = app.request(Method::GET, "/assets/other.js").await;
    got.assert_problem(404, "no resource at this path");
}
