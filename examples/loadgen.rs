//! HTTP load with per-status latency percentiles, for `bench/ops.py`.
//!
//! Closed loop (`--rate 0`: `--concurrency` workers back to back) or open loop (`--rate R`
//! requests per second whatever the answers, at most `--concurrency` outstanding). With
//! `--probe URL` it also GETs that URL every 50 ms and reports its latencies. Prints one JSON
//! object: statuses, errors (`connect`: refused before sending; `other`: failed after), and
//! latency percentiles in milliseconds per status.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Args {
    /// POST target.
    #[arg(long)]
    url: String,
    /// File with the JSON body to POST.
    #[arg(long)]
    body: std::path::PathBuf,
    /// Requests per second (open loop); 0 for a closed loop.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Closed-loop workers, or the cap on outstanding requests in an open loop.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Length of the run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// URL to GET every 50 ms during the run.
    #[arg(long)]
    probe: Option<String>,
}

/// What came back: an HTTP status, or an error kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Status(u16),
    Connect,
    Other,
}

type Log = Arc<Mutex<Vec<(Outcome, f64)>>>;

async fn one(client: &reqwest::Client, url: &str, body: &bytes::Bytes, log: &Log) {
    let start = Instant::now();
    let sent = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await;
    let outcome = match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.bytes().await {
                Ok(_) => Outcome::Status(status),
                Err(_) => Outcome::Other,
            }
        }
        Err(err) if err.is_connect() => Outcome::Connect,
        Err(_) => Outcome::Other,
    };
    let ms = start.elapsed().as_secs_f64() * 1e3;
    log.lock().unwrap().push((outcome, ms));
    if outcome == Outcome::Connect {
        // Nobody listening: do not spin.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn percentiles(mut ms: Vec<f64>) -> Value {
    if ms.is_empty() {
        return Value::Null;
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    json!({"n": ms.len(), "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": at(1.0)})
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let body = bytes::Bytes::from(std::fs::read(&args.body).unwrap());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .unwrap();
    let log: Log = Arc::default();
    let run = Duration::from_secs_f64(args.seconds);
    let start = Instant::now();

    let probe = args.probe.clone().map(|url| {
        let client = reqwest::Client::new();
        tokio::spawn(async move {
            let mut times = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            while start.elapsed() < run {
                tick.tick().await;
                let begun = Instant::now();
                if let Ok(response) = client.get(&url).send().await
                    && response.bytes().await.is_ok()
                {
                    times.push(begun.elapsed().as_secs_f64() * 1e3);
                }
            }
            times
        })
    });

    // What each request task needs, cloned.
    let handles = || {
        (
            client.clone(),
            args.url.clone(),
            body.clone(),
            Arc::clone(&log),
        )
    };
    let mut tasks = Vec::new();
    if args.rate > 0.0 {
        let permits = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut skipped = 0u64;
        while start.elapsed() < run {
            tick.tick().await;
            let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                skipped += 1;
                continue;
            };
            let (client, url, body, log) = handles();
            tasks.push(tokio::spawn(async move {
                one(&client, &url, &body, &log).await;
                drop(permit);
            }));
        }
        if skipped > 0 {
            eprintln!("loadgen: {skipped} arrivals skipped at the concurrency cap");
        }
    } else {
        for _ in 0..args.concurrency {
            let (client, url, body, log) = handles();
            tasks.push(tokio::spawn(async move {
                while start.elapsed() < run {
                    one(&client, &url, &body, &log).await;
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let probe = match probe {
        Some(task) => percentiles(task.await.unwrap()),
        None => Value::Null,
    };

    let log = std::mem::take(&mut *log.lock().unwrap());
    let mut by_outcome: BTreeMap<Outcome, Vec<f64>> = BTreeMap::new();
    for (outcome, ms) in log {
        by_outcome.entry(outcome).or_default().push(ms);
    }
    let name = |o: &Outcome| match o {
        Outcome::Status(s) => s.to_string(),
        Outcome::Connect => "connect_error".to_owned(),
        Outcome::Other => "other_error".to_owned(),
    };
    let counts: serde_json::Map<String, Value> = by_outcome
        .iter()
        .map(|(o, v)| (name(o), json!(v.len())))
        .collect();
    let latency: serde_json::Map<String, Value> = by_outcome
        .into_iter()
        .map(|(o, v)| (name(&o), percentiles(v)))
        .collect();
    println!(
        "{}",
        json!({"elapsed_s": elapsed, "counts": counts, "latency_ms": latency, "probe_ms": probe})
    );
}
