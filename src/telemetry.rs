//! Log set-up: `tracing` to stderr, as text or JSON lines, written by a thread of its own.
//!
//! Requests never wait for the log. Lines go through a queue of [`QUEUED_LINES`] to a writer
//! thread; when whoever reads stderr stops reading (a stalled log collector, a pipe nobody
//! drains), lines past the queue are dropped and counted ([`dropped_lines`], exported as
//! `simserve_log_lines_dropped_total`) instead of stalling the server. Keep the [`Log`]
//! [`init`] returns until exit: dropping it writes out what is queued.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// Lines the log holds for its writer at most (a few MB of request lines).
pub const QUEUED_LINES: usize = 8192;

/// The lines dropped so far, once the log is installed.
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// The installed log; dropping it writes out the lines still queued.
#[must_use = "the log writes out its queued lines when this is dropped: keep it until exit"]
pub struct Log {
    _writer: WorkerGuard,
}

/// Installs the global subscriber for `config`; a bad filter falls back to `info`.
pub fn init(config: &Config) -> Log {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("simserve-log")
        .finish(std::io::stderr());
    // A second `init` (none in the binary) keeps counting on the first writer's counter.
    let _ = DROPPED.set(writer.error_counter());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    match config.log_format {
        LogFormat::Text => builder.init(),
        // The spans' fields once, in `spans` (the request's, then the operation's): the
        // current span alone (`span`) would repeat the last of them.
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
    Log { _writer: guard }
}

/// Log lines dropped because the log's queue was full; 0 before [`init`].
pub fn dropped_lines() -> usize {
    DROPPED.get().map_or(0, ErrorCounter::dropped_lines)
}
