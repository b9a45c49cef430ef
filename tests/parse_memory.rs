//! Parsing a body and checking it into a job hold at most what admission reserves for that
//! body ([`estimate::parse`]), whatever the body is made of.
//!
//! A counting allocator measures the bytes allocated at once around the parse and check of
//! bodies built to cost the most per byte: lists of the shortest elements (`"",`, `0,`,
//! `[],`), each list one element past a doubling of its buffer, and the Open Inference
//! Protocol's JSON fields, just within their limit and past it (an inference request also
//! reserves [`estimate::INFER_FIELDS`] for them).
//!
//! Buffers count at their capacity, which they may not have touched yet; a buffer regrown
//! counts at its new size from then on: while it is copied, the old buffer and as many bytes
//! of the new one are touched, no more. This is its own test binary: the allocator counts
//! every thread, and this one test is all that runs in it.

use std::path::PathBuf;

use clap::Parser;
use simserve::admission::Admission;
use simserve::admission::estimate;
use simserve::answer::Encoding;
use simserve::api::matrix::MatrixJob;
use simserve::api::pairwise::PairwiseJob;
use simserve::api::user_item::UserItemJob;
use simserve::api::v2::models::{Model, Parts};
use simserve::api::{Context, Operation};
use simserve::body::infer::Arriving;
use simserve::body::{BodyHead, Sink};
use simserve::state::AppState;
use simserve::tables::Resolve;
use simserve::tensor;
use simserve::{Config, body};

#[path = "support/counting.rs"]
mod counting;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// `count` copies of `element`, comma-separated.
fn many(element: &str, count: usize) -> String {
    vec![element; count].join(",")
}

/// Elements per list: one past a doubling, where a growing buffer holds the most per element.
const N: usize = (1 << 19) + 1;

/// A JSON array of one-entry maps (`{"":0}`, the JSON that takes the most as a `Value`)
/// taking at most `bytes` bytes.
fn maps_within(bytes: usize) -> String {
    format!("[{}]", many(r#"{"":0}"#, (bytes - 1) / 7))
}

/// A JSON array of maps nested 100 deep (`{"":{"":…0}}`, a tree node of some 600 bytes per
/// 5 bytes of JSON) taking at most `bytes` bytes.
fn nested_maps_within(bytes: usize) -> String {
    let depth = 100;
    let one = format!("{}0{}", r#"{"":"#.repeat(depth), "}".repeat(depth));
    format!("[{}]", many(&one, (bytes - 1) / (one.len() + 1)))
}

/// Which route reads the body.
#[derive(Clone, Copy, Debug)]
enum Route {
    UserItem,
    Matrix,
    Pairwise,
    V2UserItem,
    V2Matrix,
}

/// Parses `body` as `O`'s and checks it into a job: whether that succeeded.
fn native<O: Operation>(body: &[u8], context: &Context) -> Result<(), String> {
    body::parse::<O::Request>(body)
        .and_then(|request| O::parse(request, context))
        .map(drop)
        .map_err(|err| err.to_string())
}

/// Decodes `body` as an inference request for `M` and checks it into a job.
fn v2<M: Model>(body: &[u8], context: &Context) -> Result<(), String> {
    body::infer::decode(
        None,
        body,
        &Default::default(),
        usize::MAX,
        None,
        M::SIGNATURE,
    )
    .and_then(|decoded| {
        let mut parts = Parts::new(decoded.inputs, decoded.parameters);
        let (request, _) = M::request(&mut parts, Encoding::Json)?;
        M::parse(request, context)
    })
    .map(drop)
    .map_err(|err| err.to_string())
}

#[test]
fn parsing_and_checking_a_body_never_hold_more_than_admission_reserves_for_it() {
    let tables = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tables/good");
    let config = Config::parse_from(["simserve", "--tables", &tables.to_string_lossy()]);
    let state = AppState::new(&config);
    assert!(state.tables.load().is_ok(), "the fixture tables load");
    let catalog = state.tables.catalog();
    let context = Context {
        limits: &state.limits,
        tables: Resolve::new(&catalog, usize::MAX),
    };

    let one = "[1]";
    let rows = many(one, N);
    let empty = many(r#""""#, N);
    let zeros = many("0", N);
    let sku = many(r#""sku-003""#, N);
    let limit = body::infer::MAX_FIELD_JSON;
    let users = r#"{"name":"users","datatype":"FP32","shape":[1,1],"data":[1]}"#;
    let items = r#"{"name":"items","datatype":"FP32","shape":[1,1],"data":[1]}"#;
    // (what the body is made of, the body, its route, whether it makes a job)
    let cases = [
        (
            "item_ids of empty strings",
            format!(r#"{{"users":[{one}],"items":[{rows}],"top_k":1,"item_ids":[{empty}]}}"#),
            Route::UserItem,
            true,
        ),
        (
            "exclude ids, looked up in item_ids",
            format!(
                r#"{{"users":[{one}],"items":[{one}],"top_k":1,"item_ids":[""],"exclude":[[{empty}]]}}"#
            ),
            Route::UserItem,
            true,
        ),
        (
            "exclude ids, looked up in a table's ids",
            format!(
                r#"{{"users":[[1,2,3,4,5,6,7,8]],"items":{{"table":"items"}},"top_k":1,"exclude":[[{sku}]]}}"#
            ),
            Route::UserItem,
            true,
        ),
        (
            "exclude indices",
            format!(r#"{{"users":[{one}],"items":[{one}],"top_k":1,"exclude":[[{zeros}]]}}"#),
            Route::UserItem,
            true,
        ),
        (
            "exclude lists, all empty",
            format!(
                r#"{{"users":[{rows}],"items":[{one}],"top_k":1,"exclude":[{}]}}"#,
                many("[]", N)
            ),
            Route::UserItem,
            true,
        ),
        (
            // Read as the walk meets it (a body under the parallel size), the first tensor's
            // buffer is sized from its one row against all the text after it.
            "a one-number tensor before a long one, in a body read on one thread",
            format!(
                r#"{{"a":[{one}],"b":[{}]}}"#,
                many(one, (tensor::text::PARALLEL_BYTES - 32) / 4)
            ),
            Route::Matrix,
            true,
        ),
        (
            // Refused by serde, and read ahead only once: a buffer per copy would add up.
            "a tensor field many times over, in a body read on one thread",
            format!(
                r#"{{{},"a":[{one}]}}"#,
                many(r#""a":[[1]]"#, (tensor::text::PARALLEL_BYTES - 32) / 10)
            ),
            Route::Matrix,
            false,
        ),
        (
            "pairs",
            format!(
                r#"{{"users":[{one}],"items":[{one}],"pairs":[{}]}}"#,
                many("[0,0]", N)
            ),
            Route::UserItem,
            true,
        ),
        (
            "exclude ids among chosen rows of a table",
            format!(
                r#"{{"users":[[1,2,3,4,5,6,7,8]],"items":{{"table":"items","rows":[{zeros},1]}},"top_k":1,"exclude":[[{}]]}}"#,
                many(r#""sku-001""#, N)
            ),
            Route::UserItem,
            true,
        ),
        (
            "many chosen rows of a table, and an exclude id",
            format!(
                r#"{{"users":[[1,2,3,4,5,6,7,8]],"items":{{"table":"items","rows":[{zeros},1]}},"top_k":1,"exclude":[["sku-001"]]}}"#
            ),
            Route::UserItem,
            true,
        ),
        (
            "many item_ids, and an exclude id",
            format!(
                r#"{{"users":[{one}],"items":[{rows},[1]],"top_k":1,"item_ids":[{empty},"x"],"exclude":[["x"]]}}"#
            ),
            Route::UserItem,
            true,
        ),
        (
            "table rows by id",
            format!(r#"{{"users":{{"table":"items","ids":[{sku}]}},"items":[[1,2,3,4,5,6,7,8]]}}"#),
            Route::UserItem,
            true,
        ),
        (
            "table rows by index",
            format!(
                r#"{{"users":{{"table":"items","rows":[{zeros}]}},"items":[[1,2,3,4,5,6,7,8]]}}"#
            ),
            Route::UserItem,
            true,
        ),
        (
            "rows of one number",
            format!(r#"{{"a":[{rows}],"top_k":1}}"#),
            Route::Matrix,
            true,
        ),
        (
            "sets of one row",
            format!(r#"{{"a":[{}]}}"#, many("[[1]]", N)),
            Route::Matrix,
            true,
        ),
        (
            "one long row",
            format!(r#"{{"a":[[{zeros}]],"b":[[{zeros}]]}}"#),
            Route::Pairwise,
            true,
        ),
        (
            "v2: a shape of many axes",
            format!(
                r#"{{"inputs":[{{"name":"a","datatype":"FP32","shape":[{zeros}],"data":[]}}]}}"#
            ),
            Route::V2Matrix,
            false,
        ),
        (
            "v2: an id of many arrays",
            format!(r#"{{"id":[{}],"inputs":[]}}"#, many("[]", N)),
            Route::V2Matrix,
            false,
        ),
        (
            "v2: a parameter of many arrays",
            format!(
                r#"{{"parameters":{{"top_k":[{}]}},"inputs":[]}}"#,
                many("[]", N)
            ),
            Route::V2Matrix,
            false,
        ),
        (
            "v2: outputs of many arrays",
            format!(r#"{{"outputs":[{}],"inputs":[]}}"#, many("[]", N)),
            Route::V2Matrix,
            false,
        ),
        (
            "v2: many inputs",
            format!(
                r#"{{"inputs":[{}]}}"#,
                many(r#"{"name":0,"shape":0,"datatype":0}"#, (1 << 16) + 1)
            ),
            Route::V2Matrix,
            false,
        ),
        (
            "v2: parameters and outputs just within their limit",
            format!(
                r#"{{"parameters":{{"top_k":{}}},"outputs":{},"inputs":[]}}"#,
                maps_within(limit - r#"{"top_k":}"#.len()),
                maps_within(limit)
            ),
            Route::V2Matrix,
            false,
        ),
        (
            "v2: parameters and outputs of nested maps just within their limit",
            format!(
                r#"{{"parameters":{{"top_k":{}}},"outputs":{},"inputs":[]}}"#,
                nested_maps_within(limit - r#"{"top_k":}"#.len()),
                nested_maps_within(limit)
            ),
            Route::V2Matrix,
            false,
        ),
        (
            "v2: an input's shape just within its limit",
            format!(
                r#"{{"inputs":[{{"name":"a","datatype":"FP32","shape":{},"data":[]}}]}}"#,
                maps_within(limit)
            ),
            Route::V2Matrix,
            false,
        ),
        (
            "v2: exclude lists",
            format!(
                r#"{{"parameters":{{"top_k":1}},"inputs":[{users},{items},{{"name":"exclude","datatype":"INT64","shape":[{N}],"data":[{zeros}]}},{{"name":"exclude_offsets","datatype":"INT64","shape":[2],"data":[0,{N}]}}]}}"#
            ),
            Route::V2UserItem,
            true,
        ),
        (
            "v2: exclude offsets",
            format!(
                r#"{{"parameters":{{"top_k":1}},"inputs":[{{"name":"users","datatype":"FP32","shape":[{n},1],"data":[{ones}]}},{items},{{"name":"exclude","datatype":"INT64","shape":[0],"data":[]}},{{"name":"exclude_offsets","datatype":"INT64","shape":[{N}],"data":[{zeros}]}}]}}"#,
                n = N - 1,
                ones = many("1", N - 1)
            ),
            Route::V2UserItem,
            true,
        ),
        (
            "v2: BYTES ids of a table's rows",
            format!(
                r#"{{"parameters":{{"users_table":"items"}},"inputs":[{{"name":"users","datatype":"BYTES","shape":[{N}],"data":[{sku}]}},{{"name":"items","datatype":"FP32","shape":[1,8],"data":[1,2,3,4,5,6,7,8]}}]}}"#
            ),
            Route::V2UserItem,
            true,
        ),
        (
            "v2: INT64 pairs",
            format!(
                r#"{{"inputs":[{{"name":"users","datatype":"FP32","shape":[1,1],"data":[1]}},{{"name":"items","datatype":"FP32","shape":[1,1],"data":[1]}},{{"name":"pairs","datatype":"INT64","shape":[{N},2],"data":[{}]}}]}}"#,
                many("0,0", N)
            ),
            Route::V2UserItem,
            true,
        ),
        (
            "v2: FP32 numbers",
            format!(
                r#"{{"parameters":{{"top_k":1}},"inputs":[{{"name":"a","datatype":"FP32","shape":[{N},1],"data":[{zeros}]}}]}}"#
            ),
            Route::V2Matrix,
            true,
        ),
    ];

    let mut failures = Vec::new();
    for (what, body, route, makes_a_job) in cases {
        let body = body.into_bytes();
        let mut made = Ok(());
        let peak = counting::peak_of(|| {
            made = match route {
                Route::UserItem => native::<UserItemJob>(&body, &context),
                Route::Matrix => native::<MatrixJob>(&body, &context),
                Route::Pairwise => native::<PairwiseJob>(&body, &context),
                Route::V2UserItem => v2::<UserItemJob>(&body, &context),
                Route::V2Matrix => v2::<MatrixJob>(&body, &context),
            }
        });
        // What parsing reserves, less the inflated copy of a compressed body: these are not;
        // inference requests reserve their fields' share besides.
        let fields = match route {
            Route::V2UserItem | Route::V2Matrix => estimate::INFER_FIELDS,
            _ => 0,
        };
        let reserved = estimate::parse(body.len()) - body.len() + fields;
        let per_byte = peak as f64 / body.len() as f64;
        eprintln!(
            "{what}: {} body bytes, {peak} bytes at most ({per_byte:.1} per body byte), \
             {reserved} reserved",
            body.len()
        );
        if made.is_ok() != makes_a_job {
            failures.push(format!(
                "{what}: made a job: {made:?}, expected {makes_a_job}"
            ));
        }
        if peak > reserved {
            failures.push(format!("{what}: held {peak} bytes, {reserved} reserved"));
        }
    }

    // A binary inference request that declares its length reads its JSON as the body
    // arrives, reserving for that while, on top of the body.
    let json = format!(
        r#"{{"parameters":{{"top_k":{}}},"inputs":[{{"name":"a","datatype":"FP32","shape":[1,1],"parameters":{{"binary_data_size":4,"x":{}}}}}]}}"#,
        nested_maps_within(limit - r#"{"top_k":}"#.len()),
        nested_maps_within(limit - r#"{"binary_data_size":4,"x":}"#.len())
    );
    let mut bytes = json.clone().into_bytes();
    bytes.extend_from_slice(&1f32.to_le_bytes());
    let head = BodyHead {
        coding: None,
        declared: Some(bytes.len()),
    };
    let admission = Admission::new(1, 1, usize::MAX);
    let mut place = admission.enter(Some(bytes.len())).unwrap();
    let mut arriving = Arriving::for_body(head, Some(json.len()), MatrixJob::SIGNATURE).unwrap();
    let mut took = Ok(());
    let peak = counting::peak_of(|| took = arriving.take(&bytes, place.reservation()));
    assert!(took.is_ok());
    let reserved = estimate::parse(json.len()) + estimate::INFER_FIELDS;
    eprintln!(
        "a binary request's JSON read as it arrives: {peak} bytes at most, {reserved} reserved"
    );
    if peak > reserved {
        failures.push(format!(
            "the JSON read as it arrives: held {peak} bytes, {reserved} reserved"
        ));
    }
    // And it is reserved indeed: a budget a byte short of it refuses the request.
    let admission = Admission::new(1, 1, bytes.len() + reserved - 1);
    let mut place = admission.enter(Some(bytes.len())).unwrap();
    let mut arriving = Arriving::for_body(head, Some(json.len()), MatrixJob::SIGNATURE).unwrap();
    if arriving.take(&bytes, place.reservation()).is_ok() {
        failures.push("the JSON read as it arrives: not reserved for".to_owned());
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
