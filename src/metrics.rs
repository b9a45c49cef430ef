//! Prometheus metrics, served as OpenMetrics text on `GET /metrics`.
//!
//! One registry per server (no globals), so tests can run many servers in one process.
//! Routes are labelled by their template (`/similarity/matrix`), never by the raw path, and
//! unknown paths share the label `unmatched`, so label sets stay bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::admission::{Admission, Refusal};
use crate::compute::blas;
use crate::error::ApiError;
use crate::tables::Tables;
use crate::telemetry;

/// Labels of a finished request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

/// Labels that name a route only.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

/// Labels that name a table.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    table: String,
}

/// Labels of a table reload's outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// Labels that name a listener: `main` (`--addr`) or `admin` (`--admin-addr`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: &'static str,
}

/// Labels of a refused request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Why a request was refused: the `reason` of `simserve_rejections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Every permit busy and the wait queue full.
    QueueFull,
    /// The memory budget taken by other requests for now.
    MemoryBusy,
    /// More memory than the whole budget.
    MemoryTooLarge,
    /// `--request-timeout` (or an inference request's `timeout`) passed.
    Deadline,
    /// The body did not arrive within `--body-timeout`.
    BodyTimeout,
}

impl Rejection {
    /// Every reason, each counted from 0 so that the first refusal is an increase.
    pub const ALL: [Rejection; 5] = [
        Rejection::QueueFull,
        Rejection::MemoryBusy,
        Rejection::MemoryTooLarge,
        Rejection::Deadline,
        Rejection::BodyTimeout,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Rejection::QueueFull => "queue_full",
            Rejection::MemoryBusy => "memory_busy",
            Rejection::MemoryTooLarge => "memory_too_large",
            Rejection::Deadline => "deadline",
            Rejection::BodyTimeout => "body_timeout",
        }
    }
}

impl From<Refusal> for Rejection {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::QueueFull => Rejection::QueueFull,
            Refusal::MemoryBusy { .. } => Rejection::MemoryBusy,
            Refusal::MemoryTooLarge { .. } => Rejection::MemoryTooLarge,
        }
    }
}

/// A table reload's `result` label.
fn reload_result(ok: bool) -> &'static str {
    if ok { "ok" } else { "error" }
}

/// Latency buckets from 0.5 ms to about 33 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// Every metric simserve exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    admission: Arc<Admission>,
    tables: Arc<Tables>,
    table_bytes: Family<TableLabels, Gauge>,
    table_rows: Family<TableLabels, Gauge>,
    table_reloads: Family<ResultLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    compute: Family<RouteLabels, Histogram, fn() -> Histogram>,
    rejections: Family<ReasonLabels, Counter>,
    bytes_in: Family<RouteLabels, Counter>,
    bytes_out: Family<RouteLabels, Counter>,
    in_flight: Gauge,
    connections: Family<ListenerLabels, Gauge>,
    malformed_heads: Family<ListenerLabels, Counter>,
    /// Held while a render clears, refills and encodes the table gauges, so that a scrape
    /// at the same time never sees them cleared.
    rendering: std::sync::Mutex<()>,
    queue_depth: Gauge,
    computing: Gauge,
    reserved: Gauge,
    kept_bodies: Gauge,
    log_dropped: Counter,
}

impl Metrics {
    /// The metrics of a server whose admission state is `admission`, serving `tables`.
    pub fn new(admission: Arc<Admission>, tables: Arc<Tables>) -> Self {
        let mut registry = Registry::with_prefix("simserve");
        let table_bytes = Family::<TableLabels, Gauge>::default();
        registry.register_with_unit(
            "table",
            "Bytes each server-side table holds (values, norms and ids); \
             outside the memory budget",
            Unit::Bytes,
            table_bytes.clone(),
        );
        let table_rows = Family::<TableLabels, Gauge>::default();
        registry.register(
            "table_rows",
            "Rows of each server-side table",
            table_rows.clone(),
        );
        let table_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "table_reloads",
            "Table reloads (SIGHUP or POST /tables/reload), by result: ok, or error when a \
             file failed and kept its last good version",
            table_reloads.clone(),
        );
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by method, route and status",
            requests.clone(),
        );
        let latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its response headers",
            Unit::Seconds,
            latency.clone(),
        );
        let compute: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "compute_duration",
            "Time spent computing and encoding a result, after parsing",
            Unit::Seconds,
            compute.clone(),
        );
        let rejections = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "rejections",
            "Requests refused by admission control or deadlines, by reason",
            rejections.clone(),
        );
        // Every series from 0, so that `increase()` sees the first refusal and failed reload.
        for rejection in Rejection::ALL {
            drop(rejections.get_or_create(&ReasonLabels {
                reason: rejection.label(),
            }));
        }
        for ok in [true, false] {
            drop(table_reloads.get_or_create(&ResultLabels {
                result: reload_result(ok),
            }));
        }
        let bytes_in = Family::<RouteLabels, Counter>::default();
        registry.register_with_unit(
            "http_request_body",
            "Request body bytes received (compressed, when sent compressed)",
            Unit::Bytes,
            bytes_in.clone(),
        );
        let bytes_out = Family::<RouteLabels, Counter>::default();
        registry.register_with_unit(
            "http_response_body",
            "Response body bytes as handlers wrote them (similarity routes compress their own)",
            Unit::Bytes,
            bytes_out.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "http_requests_in_flight",
            "Requests being handled",
            in_flight.clone(),
        );
        let connections = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "connections",
            "Connections open, by listener: main (--addr, at most --max-connections) or admin \
             (--admin-addr)",
            connections.clone(),
        );
        let malformed_heads = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "http_malformed_requests",
            "Requests whose head could not be parsed (a bad request line or header, or a head \
             too large), answered 400 or 431 before any route, by listener",
            malformed_heads.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Requests admitted from their headers and not yet computing: receiving their body or \
             waiting for a compute permit",
            queue_depth.clone(),
        );
        let computing = Gauge::default();
        registry.register(
            "compute_permits_in_use",
            "Compute permits held",
            computing.clone(),
        );
        let reserved = Gauge::default();
        registry.register_with_unit(
            "memory_reserved",
            "Bytes reserved against the memory budget",
            Unit::Bytes,
            reserved.clone(),
        );
        let log_dropped = Counter::default();
        registry.register(
            "log_lines_dropped",
            "Log lines dropped because stderr was not read fast enough (the log never stalls \
             requests)",
            log_dropped.clone(),
        );
        let kept_bodies = Gauge::default();
        registry.register_with_unit(
            "kept_body_buffers",
            "Bytes of large body buffers kept for the next large body (--kept-body-bytes); \
             outside the memory budget",
            Unit::Bytes,
            kept_bodies.clone(),
        );
        registry.register(
            "matrix_products",
            "The library that multiplies vectors of 128 dimensions or more: openblas or faer \
             (SIMSERVE_BLAS)",
            Info::new([("library", blas::library())]),
        );
        Metrics {
            registry,
            admission,
            tables,
            table_bytes,
            table_rows,
            table_reloads,
            requests,
            latency,
            compute,
            rejections,
            bytes_in,
            bytes_out,
            in_flight,
            connections,
            malformed_heads,
            rendering: std::sync::Mutex::new(()),
            queue_depth,
            computing,
            reserved,
            kept_bodies,
            log_dropped,
        }
    }

    /// Sets the bytes of body buffers kept for reuse ([`crate::body::kept`]).
    pub fn kept_body_bytes(&self, bytes: usize) {
        self.kept_bodies
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Counts a finished request.
    pub fn request_done(&self, done: &Finished) {
        self.requests
            .get_or_create(&RequestLabels {
                method: done.method,
                route: done.route.clone(),
                status: done.status,
            })
            .inc();
        let route = RouteLabels {
            route: done.route.clone(),
        };
        self.latency
            .get_or_create(&route)
            .observe(done.latency.as_secs_f64());
        self.bytes_in.get_or_create(&route).inc_by(done.bytes_in);
        self.bytes_out.get_or_create(&route).inc_by(done.bytes_out);
    }

    /// Records a computation's duration.
    pub fn computed(&self, route: &str, took: Duration) {
        self.compute
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts a refusal.
    pub fn rejected(&self, rejection: Rejection) {
        self.rejections
            .get_or_create(&ReasonLabels {
                reason: rejection.label(),
            })
            .inc();
    }

    /// Counts admission's `refusal` and turns it into the client's answer.
    pub fn refused(&self, refusal: Refusal) -> ApiError {
        self.rejected(Rejection::from(refusal));
        ApiError::from(refusal)
    }

    /// Counts a table reload: `ok`, or `error` when a file failed to load.
    pub fn table_reload(&self, ok: bool) {
        self.table_reloads
            .get_or_create(&ResultLabels {
                result: reload_result(ok),
            })
            .inc();
    }

    /// A request started; it ends when the guard drops.
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.inc();
        InFlight(Arc::clone(self))
    }

    /// A connection opened on `listener` (`main` or `admin`); it counts until the guard
    /// drops.
    pub fn connection_opened(&self, listener: &'static str) -> OpenConnection {
        let gauge = self
            .connections
            .get_or_create(&ListenerLabels { listener })
            .clone();
        gauge.inc();
        OpenConnection(gauge)
    }

    /// `listener` (`main` or `admin`) serves: its series start at 0, so that `increase()`
    /// sees its first malformed head.
    pub fn listening(&self, listener: &'static str) {
        drop(
            self.malformed_heads
                .get_or_create(&ListenerLabels { listener }),
        );
        drop(self.connections.get_or_create(&ListenerLabels { listener }));
    }

    /// A request head on `listener` that could not be parsed; the HTTP layer answered it.
    pub fn malformed_head(&self, listener: &'static str) {
        self.malformed_heads
            .get_or_create(&ListenerLabels { listener })
            .inc();
    }

    /// The OpenMetrics text of every metric, with gauges read now.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let as_gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        let _rendering = self
            .rendering
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.queue_depth.set(as_gauge(self.admission.waiting()));
        self.table_bytes.clear();
        self.table_rows.clear();
        for table in self.tables.catalog().tables() {
            let labels = TableLabels {
                table: table.name().to_owned(),
            };
            self.table_bytes
                .get_or_create(&labels)
                .set(as_gauge(table.bytes()));
            self.table_rows
                .get_or_create(&labels)
                .set(as_gauge(table.rows()));
        }
        self.computing.set(as_gauge(self.admission.computing()));
        self.reserved.set(as_gauge(self.admission.reserved()));
        // The log's own count, never lowered (renders may run at once).
        let dropped = u64::try_from(telemetry::dropped_lines()).unwrap_or(u64::MAX);
        self.log_dropped
            .inner()
            .fetch_max(dropped, std::sync::atomic::Ordering::Relaxed);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// What the request log and the metrics record of one request.
#[derive(Debug)]
pub struct Finished {
    /// The HTTP method (`other` for methods outside the standard set).
    pub method: &'static str,
    /// The route template, or `unmatched`.
    pub route: String,
    /// The response status.
    pub status: u16,
    /// Arrival to response headers.
    pub latency: Duration,
    /// Body bytes read.
    pub bytes_in: u64,
    /// Body bytes as the handler wrote them (compressed on the similarity routes when asked).
    pub bytes_out: u64,
}

/// Body bytes read for one request: the body reader adds, the request log reads. It travels
/// in the request's extensions.
#[derive(Debug, Clone, Default)]
pub struct BodyCounter(Arc<AtomicU64>);

impl BodyCounter {
    /// Adds `n` bytes read.
    pub fn add(&self, n: usize) {
        self.0
            .fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Bytes read so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counts a request as in flight until dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Metrics>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// Counts one open connection until dropped ([`Metrics::connection_opened`]).
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_reason_and_reload_result_is_counted_from_zero_before_the_first() {
        let admission = Admission::new(2, 4, 1024);
        let metrics = Metrics::new(admission, Arc::new(crate::tables::Tables::new(None)));
        let text = metrics.render().unwrap();
        for reason in [
            "queue_full",
            "memory_busy",
            "memory_too_large",
            "deadline",
            "body_timeout",
        ] {
            let line = format!("simserve_rejections_total{{reason=\"{reason}\"}} 0");
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
        }
        for result in ["ok", "error"] {
            let line = format!("simserve_table_reloads_total{{result=\"{result}\"}} 0");
            assert!(text.contains(&line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn rendered_text_holds_every_family_with_its_labels() {
        let admission = Admission::new(2, 4, 1024);
        let metrics = Arc::new(Metrics::new(
            Arc::clone(&admission),
            Arc::new(crate::tables::Tables::new(None)),
        ));
        let _held = admission.reservation();
        let guard = metrics.start();
        let connection = metrics.connection_opened("admin");
        metrics.request_done(&Finished {
            method: "POST",
            route: "/similarity/matrix".to_owned(),
            status: 200,
            latency: Duration::from_millis(3),
            bytes_in: 10,
            bytes_out: 20,
        });
        metrics.computed("/similarity/matrix", Duration::from_millis(1));
        metrics.rejected(Rejection::QueueFull);
        let text = metrics.render().unwrap();
        for line in [
            "simserve_http_requests_total{method=\"POST\",route=\"/similarity/matrix\",status=\"200\"} 1",
            "simserve_http_request_duration_seconds_count{route=\"/similarity/matrix\"} 1",
            "simserve_compute_duration_seconds_count{route=\"/similarity/matrix\"} 1",
            "simserve_rejections_total{reason=\"queue_full\"} 1",
            "simserve_http_request_body_bytes_total{route=\"/similarity/matrix\"} 10",
            "simserve_http_response_body_bytes_total{route=\"/similarity/matrix\"} 20",
            "simserve_http_requests_in_flight 1",
            "simserve_connections{listener=\"admin\"} 1",
            "simserve_queue_depth 0",
            "simserve_compute_permits_in_use 0",
            "simserve_memory_reserved_bytes 0",
            "simserve_kept_body_buffers_bytes 0",
            "simserve_matrix_products_info{library=\"openblas\"} 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        drop((guard, connection));
        let text = metrics.render().unwrap();
        assert!(text.contains("simserve_http_requests_in_flight 0"));
        assert!(text.contains("simserve_connections{listener=\"admin\"} 0"));
    }
}
