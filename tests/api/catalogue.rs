//! The bad-input catalogue: one table of every class of bad request, sent over raw HTTP to the
//! real binary, each with its exact status, problem type and detail. Afterwards the server
//! still answers normally and its memory is back near where it started.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::helpers::{gzip_bomb, spawn_binary};

/// One bad request and what it must get.
struct Case {
    class: &'static str,
    method: &'static str,
    path: &'static str,
    /// Extra header lines, each ending in CRLF.
    headers: &'static str,
    body: Vec<u8>,
    status: u16,
    kind: &'static str,
    detail: &'static str,
}

const JSON: &str = "Content-Type: application/json\r\n";

fn case(
    class: &'static str,
    path: &'static str,
    body: &[u8],
    status: u16,
    kind: &'static str,
    detail: &'static str,
) -> Case {
    Case {
        class,
        method: "POST",
        path,
        headers: JSON,
        body: body.to_vec(),
        status,
        kind,
        detail,
    }
}

/// A request with a method `path` does not take.
fn not_allowed(class: &'static str, method: &'static str, path: &'static str) -> Case {
    Case {
        class,
        method,
        ..case(
            "",
            path,
            b"",
            405,
            "method-not-allowed",
            "this method is not allowed on this path",
        )
    }
}

/// A good body sent with `headers` that name no JSON content type.
fn unsupported_type(class: &'static str, headers: &'static str) -> Case {
    Case {
        class,
        headers,
        ..case(
            "",
            "/similarity/matrix",
            br#"{"a": [[1]]}"#,
            415,
            "unsupported-media-type",
            "the request body must be sent with Content-Type: application/json",
        )
    }
}

fn catalogue() -> Vec<Case> {
    const M: &str = "/similarity/matrix";
    const P: &str = "/similarity/pairwise";
    const U: &str = "/similarity/user-item";
    // 5,000 rows against themselves: 25 million scores, over the default output limit.
    let zeros = base64::engine::general_purpose::STANDARD.encode(vec![0u8; 5000 * 4]);
    let too_large =
        format!(r#"{{"a": {{"dtype": "float32", "shape": [5000, 1], "data": "{zeros}"}}}}"#);
    let deep = format!("{{\"a\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
    let bomb = gzip_bomb();
    let mut cases = vec![
        case(
            "malformed JSON",
            M,
            br#"{"a": [[1, 2]"#,
            400,
            "malformed-json",
            "malformed JSON: EOF while parsing",
        ),
        case(
            "truncated inside a number",
            M,
            br#"{"a": [[1.5"#,
            400,
            "malformed-json",
            "malformed JSON: EOF while parsing",
        ),
        case(
            "trailing characters",
            M,
            br#"{"a": [[1]]} x"#,
            400,
            "malformed-json",
            "malformed JSON: trailing characters",
        ),
        case(
            "not an object",
            M,
            b"[[1, 2]]",
            400,
            "malformed-json",
            "the body must be a JSON object",
        ),
        case(
            "empty body",
            M,
            b"",
            400,
            "malformed-json",
            "the body must be a JSON object",
        ),
        case(
            "byte-order mark",
            M,
            b"\xef\xbb\xbf{\"a\": [[1]]}",
            400,
            "malformed-json",
            "the body must be a JSON object",
        ),
        case(
            "invalid UTF-8",
            M,
            b"{\"a\": [[1]], \"metric\": \"\xff\"}",
            400,
            "malformed-json",
            "malformed JSON: invalid unicode",
        ),
        case(
            "wrong type for a tensor",
            M,
            br#"{"a": "x"}"#,
            422,
            "invalid-request",
            "a: expected nested arrays of numbers or a base64 tensor object, found a string",
        ),
        case(
            "string in a tensor",
            M,
            br#"{"a": [[1, "2"]]}"#,
            422,
            "invalid-request",
            "a[0][1]: expected a number, found a string",
        ),
        case(
            "null in a tensor",
            M,
            br#"{"a": [[1, null]]}"#,
            422,
            "invalid-request",
            "a[0][1]: expected a number, found null",
        ),
        case(
            "NaN token",
            M,
            br#"{"a": [[NaN]]}"#,
            400,
            "malformed-json",
            "malformed JSON",
        ),
        case(
            "Infinity token",
            M,
            br#"{"a": [[Infinity]]}"#,
            400,
            "malformed-json",
            "malformed JSON",
        ),
        case(
            "1e39 into float32",
            M,
            br#"{"a": [[1.0, 1e39]]}"#,
            422,
            "invalid-request",
            "a[0][1]: value is outside the float32 range",
        ),
        case(
            "1e999",
            M,
            br#"{"a": [[1e999]]}"#,
            400,
            "malformed-json",
            "malformed JSON: number out of range",
        ),
        case(
            "huge exponent string",
            M,
            br#"{"a": [[1e999999999999999999999]]}"#,
            400,
            "malformed-json",
            "malformed JSON: number out of range",
        ),
        case(
            "deep nesting",
            M,
            deep.as_bytes(),
            422,
            "invalid-request",
            "a: expected a tensor of rank 2 or 3, found rank 4",
        ),
        case(
            "duplicate keys",
            M,
            br#"{"a": [[1]], "a": [[2]]}"#,
            422,
            "invalid-request",
            "duplicate field `a`",
        ),
        case(
            "unknown field",
            M,
            br#"{"a": [[1]], "c": 1}"#,
            422,
            "invalid-request",
            "unknown field `c`",
        ),
        case(
            "missing field",
            M,
            br#"{"b": [[1]]}"#,
            422,
            "invalid-request",
            "missing field `a`",
        ),
        case(
            "ragged rows",
            M,
            br#"{"a": [[1, 2], [3]]}"#,
            422,
            "invalid-request",
            "a[1]: row has 1 values, expected 2",
        ),
        case(
            "empty tensor",
            M,
            br#"{"a": []}"#,
            422,
            "invalid-request",
            "a: empty array",
        ),
        case(
            "empty row",
            M,
            br#"{"a": [[1], []]}"#,
            422,
            "invalid-request",
            "a[1]: empty array",
        ),
        case(
            "dimensions disagree",
            P,
            br#"{"a": [[1, 2]], "b": [[1, 2, 3]]}"#,
            422,
            "invalid-request",
            "b: vectors have dimension 3, but those of a have dimension 2",
        ),
        case(
            "rank too low",
            M,
            br#"{"a": [1, 2]}"#,
            422,
            "invalid-request",
            "a: expected a tensor of rank 2 or 3, found rank 1",
        ),
        case(
            "base64: invalid characters",
            M,
            br#"{"a": {"dtype": "float32", "shape": [1, 1], "data": "AAAA*A=="}}"#,
            422,
            "invalid-request",
            "a.data: not valid standard base64",
        ),
        case(
            "base64: length disagrees with shape",
            M,
            br#"{"a": {"dtype": "float32", "shape": [1, 2], "data": "AACAPw=="}}"#,
            422,
            "invalid-request",
            "a.data: decodes to 4 bytes, shape [1, 2] of float32 needs 8",
        ),
        case(
            "base64: unknown dtype",
            M,
            br#"{"a": {"dtype": "int8", "shape": [1, 1], "data": "AA=="}}"#,
            422,
            "invalid-request",
            "a.dtype: unknown dtype",
        ),
        case(
            "base64: shape overflows",
            M,
            br#"{"a": {"dtype": "float32", "shape": [2147483648, 2147483648, 8], "data": ""}}"#,
            422,
            "invalid-request",
            "a.shape: element count overflows",
        ),
        case(
            "base64: negative axis",
            M,
            br#"{"a": {"dtype": "float32", "shape": [1, -1], "data": ""}}"#,
            422,
            "invalid-request",
            "a.shape[1]: expected a non-negative integer",
        ),
        case(
            "base64: NaN in the data",
            M,
            br#"{"a": {"dtype": "float32", "shape": [1, 1], "data": "AADAfw=="}}"#,
            422,
            "invalid-request",
            "a[0][0]: value is NaN, infinite or outside the float32 range",
        ),
        case(
            "base64: no data",
            M,
            br#"{"a": {"dtype": "float32", "shape": [1, 1]}}"#,
            422,
            "invalid-request",
            "a: tensor object has no \"data\"",
        ),
        case(
            "pair index out of range",
            U,
            br#"{"users": [[1, 0]], "items": [[1, 0], [0, 1]], "pairs": [[0, 5]]}"#,
            422,
            "invalid-request",
            "pairs[0][1]: item index 5 is out of range for 2 items",
        ),
        case(
            "exclude of the wrong length",
            U,
            br#"{"users": [[1, 0], [0, 1]], "items": [[1, 0]], "top_k": 1, "exclude": [[0]]}"#,
            422,
            "invalid-request",
            "exclude: has 1 lists, expected one per user (2)",
        ),
        case(
            "exclude index out of range",
            U,
            br#"{"users": [[1, 0]], "items": [[1, 0], [0, 1]], "top_k": 1, "exclude": [[9]]}"#,
            422,
            "invalid-request",
            "exclude[0][0]: item index 9 is out of range for 2 items",
        ),
        case(
            "top_k of 0",
            M,
            br#"{"a": [[1]], "top_k": 0}"#,
            422,
            "invalid-request",
            "top_k: expected an integer of at least 1, found 0",
        ),
        case(
            "threshold not a number",
            M,
            br#"{"a": [[1]], "threshold": "high"}"#,
            422,
            "invalid-request",
            "threshold: expected a number within the float32 range",
        ),
        case(
            "unknown metric",
            M,
            br#"{"a": [[1]], "metric": "jaccard"}"#,
            422,
            "invalid-request",
            "metric: expected one of \"cosine\", \"dot\", \"euclidean\", \"manhattan\", found a string",
        ),
        case(
            "output too large",
            M,
            too_large.as_bytes(),
            422,
            "invalid-request",
            "the result would hold 5000 × 5000 numbers, more than the limit of 16777216",
        ),
        Case {
            class: "gzip bomb",
            headers: "Content-Type: application/json\r\nContent-Encoding: gzip\r\n",
            body: bomb,
            ..case(
                "",
                M,
                b"",
                413,
                "payload-too-large",
                "the request body inflates more than 200 times its compressed size",
            )
        },
        Case {
            class: "corrupt gzip",
            headers: "Content-Type: application/json\r\nContent-Encoding: gzip\r\n",
            ..case(
                "",
                M,
                b"\x1f\x8b\x08 not gzip",
                400,
                "malformed-json",
                "could not decompress the gzip body",
            )
        },
        Case {
            class: "unsupported content encoding",
            headers: "Content-Type: application/json\r\nContent-Encoding: br\r\n",
            ..case(
                "",
                M,
                br#"{"a": [[1]]}"#,
                415,
                "unsupported-encoding",
                "the request body's Content-Encoding must be gzip, zstd or identity",
            )
        },
        Case {
            class: "two Host headers",
            headers: "Content-Type: application/json\r\nHost: other.example\r\n",
            ..case(
                "",
                M,
                br#"{"a": [[1]]}"#,
                400,
                "bad-host",
                "Host: given more than once; give it once",
            )
        },
        unsupported_type("wrong content type", "Content-Type: text/plain\r\n"),
        unsupported_type("missing content type", ""),
        not_allowed("wrong method", "GET", M),
        not_allowed("made-up method", "FROBNICATE", P),
        Case {
            class: "unknown route",
            ..case(
                "",
                "/similarity/jaccard",
                b"{}",
                404,
                "not-found",
                "no resource at this path",
            )
        },
    ];
    // Declared far over the limit: refused before a byte of body is read.
    cases.push(Case {
        class: "body too large",
        headers: "Content-Type: application/json\r\nContent-Length: 1000000000\r\n",
        ..case(
            "",
            M,
            b"",
            413,
            "payload-too-large",
            "the request body is larger than the limit of 67108864 bytes",
        )
    });
    cases
}

/// Sends one request on a fresh connection and returns the status, headers and JSON body.
fn send(addr: SocketAddr, case: &Case) -> (u16, String, Value) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let length = if case.headers.contains("Content-Length") {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", case.body.len())
    };
    let head = format!(
        "{} {} HTTP/1.1\r\nHost: simserve\r\nConnection: close\r\n{}{length}\r\n",
        case.method, case.path, case.headers
    );
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (and close) before taking the whole body.
    let _ = stream.write_all(&case.body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{}: {text}", case.class));
    let status = head[9..12].parse().unwrap();
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{}: {e}: {body}", case.class));
    (status, head.to_ascii_lowercase(), json)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn every_class_of_bad_input_gets_its_exact_problem_and_the_server_stays_well() {
    let (mut server, addr, lines) = spawn_binary(&["--log", "info"]);
    let child = &mut server.0;
    let log = std::thread::spawn(move || lines.map_while(Result::ok).count());

    let good = Case {
        class: "a good request",
        ..case(
            "",
            "/similarity/pairwise",
            br#"{"a": [[1, 0]], "b": [[0, 1]]}"#,
            200,
            "",
            "",
        )
    };
    let cases = catalogue();
    assert!(cases.len() >= 30, "{} classes", cases.len());
    // Warm up: every route and error path once, so that lazily built state is counted.
    for case in cases.iter().chain([&good]) {
        send(addr, case);
    }
    let before = rss_kib(child.id());

    for case in &cases {
        let (status, head, json) = send(addr, case);
        assert_eq!(status, case.status, "{}: {json}", case.class);
        assert!(
            head.contains("content-type: application/problem+json"),
            "{}: {head}",
            case.class
        );
        assert_eq!(
            json["type"],
            format!("urn:simserve:problem:{}", case.kind),
            "{}",
            case.class
        );
        assert_eq!(json["status"], case.status, "{}", case.class);
        let detail = json["detail"].as_str().unwrap();
        assert!(
            detail.starts_with(case.detail),
            "{}: {detail:?}",
            case.class
        );
        assert!(json["request_id"].is_string(), "{}", case.class);
    }

    let (status, _, json) = send(addr, &good);
    assert_eq!((status, &json["scores"]), (200, &serde_json::json!([0.0])));
    let after = rss_kib(child.id());
    eprintln!("RSS {before} KiB before the table, {after} KiB after");
    // The table holds a 100 MB gzip bomb and 10,000-deep nesting; none of it may stay.
    assert!(
        after < before + 16 * 1024,
        "RSS {before} KiB before the table, {after} KiB after"
    );

    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(log.join().unwrap() > cases.len());
}
