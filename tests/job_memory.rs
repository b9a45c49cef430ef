//! A job, from the request it is checked from to its answer's text, holds at most what
//! admission reserves for it ([`Operation::estimate`]), whatever its shape.
//!
//! A counting allocator measures the bytes the job holds once checked (its inputs and its
//! own fields) and the most allocated at once beyond them while it runs and its answer is
//! written as JSON. The requests are built to cost the most besides their numbers: many
//! small sets, rows or pairs, each with lists and buffers of its own.
//!
//! Buffers count at their capacity. This is its own test binary: the allocator counts every
//! thread, and this one test is all that runs in it.

use clap::Parser;
use simserve::answer::json;
use simserve::api::matrix::MatrixJob;
use simserve::api::pairwise::PairwiseJob;
use simserve::api::user_item::UserItemJob;
use simserve::api::{Context, Operation};
use simserve::compute::Cancel;
use simserve::state::AppState;
use simserve::tables::Resolve;
use simserve::{Config, body};

#[path = "support/counting.rs"]
mod counting;

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

/// `count` copies of `element`, comma-separated.
fn many(element: &str, count: usize) -> String {
    vec![element; count].join(",")
}

/// Sets, rows or pairs per request: one past a doubling, where a growing buffer holds the
/// most per element.
const N: usize = (1 << 12) + 1;

/// What a job reserved and held, in bytes.
struct Sizes {
    /// Its estimate.
    estimate: usize,
    /// What it held once checked, its inputs among them.
    checked: usize,
    /// The most allocated beyond that as it ran and its answer was written.
    ran: usize,
}

/// Measures a job of one route from its body.
type Measure = fn(&str, &Context) -> Result<Sizes, String>;

/// Parses `body` and checks it into a job of `O`, runs it and writes its answer as JSON.
fn measure<O: Operation>(body: &str, context: &Context) -> Result<Sizes, String> {
    let before = counting::held_now();
    let request = body::parse::<O::Request>(body.as_bytes()).map_err(|err| err.to_string())?;
    let job = O::parse(request, context).map_err(|err| err.to_string())?;
    let checked = counting::held_now().saturating_sub(before);
    let estimate = job.estimate();
    let mut answered = Ok(());
    let ran = counting::peak_of(|| {
        answered = job
            .run(&Cancel::new())
            .and_then(|outcome| json::encode(&outcome))
            .map(drop)
            .map_err(|err| err.to_string());
    });
    answered.map(|()| Sizes {
        estimate,
        checked,
        ran,
    })
}

#[test]
fn running_and_answering_a_job_never_hold_more_than_admission_reserves_for_it() {
    let config = Config::parse_from(["simserve"]);
    let state = AppState::new(&config);
    let catalog = state.tables.catalog();
    let context = Context {
        limits: &state.limits,
        tables: Resolve::new(&catalog, usize::MAX),
    };
    let sets = many("[[1]]", N);
    let rows = many("[1]", N);
    let two_rows = many("[[1],[2]]", N);
    // (what the job is made of, its route, the body)
    let cases: [(&str, Measure, String); 8] = [
        (
            "sets of one row, top 1",
            measure::<MatrixJob>,
            format!(r#"{{"a":[{sets}],"top_k":1}}"#),
        ),
        (
            "sets of two rows, top 1 excluding self",
            measure::<MatrixJob>,
            format!(r#"{{"a":[{two_rows}],"top_k":1,"exclude_self":true}}"#),
        ),
        (
            "sets of one row, above a threshold",
            measure::<MatrixJob>,
            format!(r#"{{"a":[{sets}],"threshold":0}}"#),
        ),
        (
            "sets of one row against sets of one row, dense",
            measure::<MatrixJob>,
            format!(r#"{{"a":[{sets}],"b":[{sets}]}}"#),
        ),
        (
            "rows of one number, top 1",
            measure::<MatrixJob>,
            format!(r#"{{"a":[{rows}],"top_k":1}}"#),
        ),
        (
            "users of one number, top 1 of one item",
            measure::<UserItemJob>,
            format!(r#"{{"users":[{rows}],"items":[[1]],"top_k":1}}"#),
        ),
        (
            "users of one number, each excluding the item",
            measure::<UserItemJob>,
            format!(
                r#"{{"users":[{rows}],"items":[[1],[2]],"top_k":1,"exclude":[{}]}}"#,
                many("[0]", N)
            ),
        ),
        (
            "pairs of one number",
            measure::<PairwiseJob>,
            format!(r#"{{"a":[{rows}],"b":[{rows}]}}"#),
        ),
    ];
    let mut over = Vec::new();
    for (what, measure, body) in cases {
        let sizes = measure(&body, &context).unwrap_or_else(|err| panic!("{what}: {err}"));
        let held = sizes.checked + sizes.ran;
        if held > sizes.estimate {
            over.push(format!(
                "{what}: held {held} bytes ({} checked, {} running), estimate {}",
                sizes.checked, sizes.ran, sizes.estimate
            ));
        }
    }
    assert!(over.is_empty(), "{over:#?}");
}
