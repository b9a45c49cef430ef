//! `GET /`: the try-it page, and `GET /assets/app.js`, `GET /assets/app.css`: its script and
//! style. All three are embedded in the binary (no CDN, no fonts, nothing fetched from
//! elsewhere) and sent under [`CONTENT_SECURITY_POLICY`], which lets the page load only
//! these two files and call only this origin. The page calls the API like any client, with
//! the key the user types (kept in the page's memory only); the three routes themselves
//! are open under `--api-keys`, like the probes (they hold nothing but static text).

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// The route of the page.
pub const INDEX_PATH: &str = "/";
/// The route of the page's script.
pub const SCRIPT_PATH: &str = "/assets/app.js";
/// The route of the page's style sheet.
pub const STYLE_PATH: &str = "/assets/app.css";

/// The policy the three responses carry: scripts and styles from this origin's files only
/// (no inline code, no `eval`), requests to this origin only, images only as `data:` URLs
/// (the blank favicon), no forms posted elsewhere, no framing.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page, its script and its style sheet.
const INDEX_HTML: &str = include_str!("page/index.html");
const APP_JS: &str = include_str!("page/app.js");
const APP_CSS: &str = include_str!("page/app.css");

/// One embedded file as a response: its content type, no caching without revalidation (a
/// new binary serves a new page at once), and the page's security headers (`nosniff`, which
/// every answer carries, is set in `app::stack`).
fn asset(content_type: &'static str, text: &'static str) -> Response {
    let headers: [(HeaderName, HeaderValue); 4] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    (headers, text).into_response()
}

/// Serves `GET /`: the try-it page.
pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

/// Serves `GET /assets/app.js`: the page's script.
pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

/// Serves `GET /assets/app.css`: the page's style sheet.
pub async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}
