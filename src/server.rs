//! Serving the router over TCP: HTTP/1.1 with a header-read timeout (slow or idle
//! connections are closed), a write timeout (clients that stop reading are cut off), and a
//! graceful drain on SIGTERM/SIGINT.
//!
//! On a signal, `/readyz` turns 503 at once; the listener keeps accepting for
//! `--shutdown-delay` (0 by default), then closes; requests in flight finish, bounded by
//! `--shutdown-timeout`; then [`Application::run_until_stopped`] returns.
//!
//! With `--admin-addr`, a second listener serves the probes and metrics
//! ([`crate::app::admin`]) on up to [`ADMIN_MAX_CONNECTIONS`] connections of its own, so
//! that a kubelet or a scraper is answered even while `--max-connections` clients hold the
//! main address. Its connections serve one request each, whose head must arrive within
//! [`ADMIN_TIMEOUT`], and are closed [`ADMIN_CONNECTION_LIFETIME`] after they open
//! whatever is still arriving, so that idle or slow clients cannot hold its slots for long. It keeps serving through the
//! drain (`/readyz` says 503 there too) and is closed before [`Application::run_until`]
//! returns.
//!
//! Tables (`--tables`) are loaded off the runtime once the listener is up: `/healthz`
//! answers meanwhile, `/readyz` says 503 until they are in, and a table that fails to load
//! stops the server with an error naming the file. SIGHUP reads the directory again.
//!
//! The tasks beside the accept loop (loading the tables then reloading them on SIGHUP, and
//! freeing unused kept body buffers) end when [`Application::run_until`] returns, so the
//! server's state goes with its last request.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_io_timeout::TimeoutStream;
use tower::ServiceExt;

use crate::app;
use crate::body::KeptBuffers;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::AppState;

/// How long to pause accepting after an accept error such as running out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Bytes a request's head (its request line and headers) may take; past it, 431. It is
/// checked as the head arrives, after each read (of up to as much again), so a connection
/// sending one holds at most about twice this, outside the memory budget
/// (`--max-connections` of them at most). hyper's own bound is its read buffer's, about
/// 400 KiB, which stays for reading bodies.
const MAX_HEAD_BYTES: usize = 64 << 10;

/// Connections the `--admin-addr` listener serves at once; past it they wait in its backlog
/// (each is held for [`ADMIN_TIMEOUT`] at most).
pub const ADMIN_MAX_CONNECTIONS: usize = 128;

/// On the `--admin-addr` listener: the longest wait for a request's head, and for a client
/// to read its answer. Probes and scrapes send their request at once and read a few KiB.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(1);

/// The longest an `--admin-addr` connection stays open: its one request's head, answer and
/// whatever body a client sends after it (which is never read) included.
pub const ADMIN_CONNECTION_LIFETIME: Duration = Duration::from_secs(2);

/// Bytes a request head may take on the `--admin-addr` listener; past it, 431.
const ADMIN_MAX_HEAD_BYTES: usize = 16 << 10;

/// How long the `--admin-addr` listener's open connections may take to close once the
/// server has stopped.
const ADMIN_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// A bound listener and the router it serves.
pub struct Application {
    listener: TcpListener,
    router: Router,
    /// The `--admin-addr` listener and what it serves, when there is one.
    admin: Option<(TcpListener, Router)>,
    state: AppState,
    header_timeout: Duration,
    write_timeout: Duration,
    shutdown_delay: Duration,
    shutdown_timeout: Duration,
    max_connections: usize,
}

impl Application {
    /// Binds `config.addr`, and `config.admin_addr` if given (port 0 picks a free port).
    pub async fn build(config: &Config) -> io::Result<Self> {
        let listener = bind("--addr", config.addr).await?;
        let admin_listener = match config.admin_addr {
            Some(addr) => Some(bind("--admin-addr", addr).await?),
            None => None,
        };
        let state = AppState::new(config);
        let admin = admin_listener.map(|listener| (listener, app::admin(state.clone(), config)));
        Ok(Application {
            listener,
            router: app::with_layers(app::routes(), state.clone(), config),
            admin,
            state,
            header_timeout: config.header_timeout,
            write_timeout: config.write_timeout,
            shutdown_delay: config.shutdown_delay,
            shutdown_timeout: config.shutdown_timeout,
            max_connections: connections_within_open_files(
                usize::try_from(config.max_connections).unwrap_or(usize::MAX),
            ),
        })
    }

    /// The state its handlers share (admission, metrics, readiness).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The `--admin-addr` address actually bound, when there is one.
    pub fn admin_addr(&self) -> io::Result<Option<SocketAddr>> {
        self.admin
            .as_ref()
            .map(|(listener, _)| listener.local_addr())
            .transpose()
    }

    /// Serves until SIGINT or SIGTERM, then drains.
    pub async fn run_until_stopped(self) -> io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` resolves, then drains. Fails when the tables fail to load.
    pub async fn run_until(mut self, stop: impl Future<Output = ()>) -> io::Result<()> {
        let admin = match self.admin.take() {
            Some((listener, router)) => {
                tracing::info!(
                    addr = %listener.local_addr()?,
                    "probes and metrics also served on the admin address"
                );
                let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
                let metrics = Arc::clone(&self.state.metrics);
                let task = tokio::spawn(serve_admin(listener, router, metrics, admin_stopped));
                Some((stop_admin, task))
            }
            None => None,
        };
        let served = self.serve_until(stop).await;
        if let Some((stop_admin, task)) = admin {
            drop(stop_admin);
            // It closes its connections within ADMIN_CLOSE_TIMEOUT.
            if let Err(err) = task.await {
                tracing::error!(%err, "the admin listener failed");
            }
        }
        served
    }

    /// [`Application::run_until`] on the main address.
    async fn serve_until(self, stop: impl Future<Output = ()>) -> io::Result<()> {
        tracing::info!(addr = %self.local_addr()?, "simserve listening");
        let mut http = http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_header_size(MAX_HEAD_BYTES)
            .keep_alive(true);
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<String>();
        let state = self.state.clone();
        // Listening from the start: a SIGHUP's default action would end the process.
        let hangups = hangups();
        let _trimming = AbortOnDrop(tokio::spawn(trim_kept_bodies(Arc::clone(
            &self.state.kept_bodies,
        ))));
        let _loading = AbortOnDrop(tokio::spawn(async move {
            let loading = state.clone();
            match tokio::task::spawn_blocking(move || loading.tables.load()).await {
                Ok(Ok(count)) => {
                    if let Some(dir) = state.tables.dir() {
                        tracing::info!(tables = count, dir = %dir.display(), "tables loaded");
                    }
                    reload_on_hangup(state, hangups).await;
                }
                Ok(Err(failures)) => {
                    let reasons: Vec<String> = failures.iter().map(ToString::to_string).collect();
                    let _ = failed_tx.send(reasons.join("; "));
                }
                Err(err) => {
                    let _ = failed_tx.send(format!("loading the tables failed: {err}"));
                }
            }
        }));
        let load_failed = async {
            match failed_rx.await {
                Ok(reason) => reason,
                Err(_) => std::future::pending().await,
            }
        };
        let graceful = GracefulShutdown::new();
        let server = Server {
            listener: &self.listener,
            router: &self.router,
            http: &http,
            graceful: &graceful,
            write_timeout: self.write_timeout,
            connections: Arc::new(Semaphore::new(self.max_connections)),
            lifetime: None,
            name: "main",
            metrics: Arc::clone(&self.state.metrics),
        };

        let mut failure = None;
        server
            .accept_until(async {
                tokio::select! {
                    () = stop => {},
                    reason = load_failed => failure = Some(reason),
                }
            })
            .await;
        self.state.start_draining();
        if let Some(reason) = failure {
            tracing::error!(%reason, "a table failed to load; stopping");
            return Err(io::Error::other(format!("tables failed to load: {reason}")));
        }
        tracing::info!(
            delay = ?self.shutdown_delay,
            "shutdown requested: /readyz now answers 503"
        );
        server
            .accept_until(tokio::time::sleep(self.shutdown_delay))
            .await;
        drop(self.listener);
        tracing::info!("listener closed; waiting for requests in flight");
        match tokio::time::timeout(self.shutdown_timeout, graceful.shutdown()).await {
            Ok(()) => tracing::info!("drained; exiting"),
            Err(_) => {
                self.state.start_cutting();
                tracing::warn!(
                    timeout = ?self.shutdown_timeout,
                    "shutdown timeout passed; closing the connections left"
                );
            }
        }
        Ok(())
    }
}

/// The parts the accept loop needs.
struct Server<'a> {
    listener: &'a TcpListener,
    router: &'a Router,
    http: &'a http1::Builder,
    graceful: &'a GracefulShutdown,
    write_timeout: Duration,
    /// One permit per connection being served (`--max-connections`).
    connections: Arc<Semaphore>,
    /// The longest a connection may stay open, if bounded.
    lifetime: Option<Duration>,
    /// The listener's label in `simserve_connections`.
    name: &'static str,
    metrics: Arc<Metrics>,
}

impl Server<'_> {
    /// Accepts and serves connections until `stop` resolves.
    async fn accept_until(&self, stop: impl Future<Output = ()>) {
        self.metrics.listening(self.name);
        tokio::pin!(stop);
        loop {
            // At the limit, new connections wait in the backlog until one closes.
            let permit = tokio::select! {
                permit = Arc::clone(&self.connections).acquire_owned() => permit,
                () = &mut stop => return,
            };
            let Ok(permit) = permit else { return };
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                () = &mut stop => return,
            };
            match accepted {
                Ok((stream, peer)) => {
                    if let Err(err) = stream.set_nodelay(true) {
                        tracing::debug!(%err, "cannot set TCP_NODELAY");
                    }
                    // A client that stops reading its answer is cut off.
                    let mut stream = TimeoutStream::new(stream);
                    stream.set_write_timeout(Some(self.write_timeout));
                    // The client's address, for the request's log lines (`observe`).
                    let service = TowerToHyperService::new(self.router.clone().map_request(
                        move |mut request: axum::http::Request<hyper::body::Incoming>| {
                            request.extensions_mut().insert(ConnectInfo(peer));
                            request
                        },
                    ));
                    let io = TokioIo::new(Box::pin(stream));
                    let connection = self.http.serve_connection(io, service);
                    let connection = self.graceful.watch(connection);
                    let lifetime = self.lifetime;
                    let open = self.metrics.connection_opened(self.name);
                    let (metrics, name) = (Arc::clone(&self.metrics), self.name);
                    tokio::spawn(async move {
                        let _counted = (permit, open);
                        let ended = match lifetime {
                            Some(lifetime) => {
                                match tokio::time::timeout(lifetime, connection).await {
                                    Ok(ended) => ended,
                                    Err(_) => return,
                                }
                            }
                            None => connection.await,
                        };
                        if let Err(err) = ended {
                            // hyper answered a head it could not parse (400, 431) itself.
                            if err.is_parse() {
                                metrics.malformed_head(name);
                            }
                            tracing::debug!(%err, "connection ended with an error");
                        }
                    });
                }
                Err(err) => {
                    tracing::warn!(%err, "accept failed; pausing");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }
}

/// Open files kept for other than the main address's connections: the admin address's
/// connections ([`ADMIN_MAX_CONNECTIONS`]), the listeners, table files being read, and the
/// runtime's and libraries' own.
const RESERVED_FILES: u64 = ADMIN_MAX_CONNECTIONS as u64 + 128;

/// Raises the process's soft limit on open files to its hard limit, and returns how many
/// connections the main address may serve: `max_connections`, or fewer (logged) when even
/// the raised limit leaves no room for them beside [`RESERVED_FILES`]. Under a soft limit of
/// 1024, the default 1024 connections would use it up, and every accept would fail then,
/// the admin address's probes' too.
fn connections_within_open_files(max_connections: usize) -> usize {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let mut open_files = limit.current;
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => open_files = limit.maximum,
            Err(err) => tracing::debug!(%err, "the open-files limit stays as it is"),
        }
    }
    let allowed = connections_allowed(max_connections, open_files);
    if allowed < max_connections {
        tracing::warn!(
            max_connections,
            allowed,
            open_files,
            "the open-files limit leaves room for fewer connections than --max-connections; \
             serving at most `allowed` (raise the limit, e.g. `ulimit -n`, to serve more)"
        );
    }
    allowed
}

/// `max_connections`, or what `open_files` (`None`: no limit) leaves beside
/// [`RESERVED_FILES`] when that is less; under a limit too low for those, half of it.
fn connections_allowed(max_connections: usize, open_files: Option<u64>) -> usize {
    match open_files {
        None => max_connections,
        Some(limit) => {
            let reserved = RESERVED_FILES.min(limit / 2);
            let room = usize::try_from(limit - reserved).unwrap_or(usize::MAX);
            max_connections.min(room.max(1))
        }
    }
}

/// Binds `addr`, the value of `flag`; an error names both.
async fn bind(flag: &str, addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| io::Error::new(err.kind(), format!("cannot bind {flag} {addr}: {err}")))
}

/// Serves the admin listener until `stop` resolves (or its sender is dropped), then closes
/// it and gives its open connections [`ADMIN_CLOSE_TIMEOUT`] to finish.
async fn serve_admin(
    listener: TcpListener,
    router: Router,
    metrics: Arc<Metrics>,
    stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut http = http1::Builder::new();
    // One request a connection, with no idle keep-alive.
    http.timer(TokioTimer::new())
        .header_read_timeout(ADMIN_TIMEOUT)
        .max_header_size(ADMIN_MAX_HEAD_BYTES)
        .keep_alive(false);
    let graceful = GracefulShutdown::new();
    let server = Server {
        listener: &listener,
        router: &router,
        http: &http,
        graceful: &graceful,
        write_timeout: ADMIN_TIMEOUT,
        connections: Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS)),
        lifetime: Some(ADMIN_CONNECTION_LIFETIME),
        name: "admin",
        metrics,
    };
    server
        .accept_until(async {
            let _ = stop.await;
        })
        .await;
    drop(listener);
    let _ = tokio::time::timeout(ADMIN_CLOSE_TIMEOUT, graceful.shutdown()).await;
}

/// SIGHUP, listened for (`None` where there is no such signal, or it cannot be had).
#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = Option<()>;

fn hangups() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(hangups) => Some(hangups),
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGHUP; tables reload only by POST");
                None
            }
        }
    }
    #[cfg(not(unix))]
    None
}

/// A task that is aborted when this is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every second, frees the kept body buffers that went unused for
/// [`crate::body::kept::KEPT_FOR`] (off the runtime: unmapping takes a while), until
/// aborted.
async fn trim_kept_bodies(kept: Arc<KeptBuffers>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if kept.kept_bytes() > 0 {
            let kept = Arc::clone(&kept);
            let _ = tokio::task::spawn_blocking(move || kept.trim(Instant::now())).await;
        }
    }
}

/// Reloads the tables on every SIGHUP (signals that arrive during a reload are merged into
/// one more reload).
async fn reload_on_hangup(state: AppState, hangups: Hangups) {
    #[cfg(unix)]
    {
        let Some(mut hangups) = hangups else {
            return;
        };
        while hangups.recv().await.is_some() {
            if state.tables.dir().is_none() {
                tracing::info!("SIGHUP: no --tables directory to reload");
                continue;
            }
            let reloading = state.clone();
            if let Err(err) = tokio::task::spawn_blocking(move || reloading.reload_tables()).await {
                tracing::error!(%err, "the table reload failed");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (state, hangups);
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_only_where_the_open_files_limit_leaves_no_room_for_them() {
        assert_eq!(connections_allowed(1024, None), 1024);
        assert_eq!(connections_allowed(1024, Some(1 << 20)), 1024);
        let limit = 1024 + RESERVED_FILES;
        assert_eq!(connections_allowed(1024, Some(limit)), 1024);
        assert_eq!(connections_allowed(1024, Some(limit - 1)), 1023);
        assert_eq!(connections_allowed(1024, Some(1024)), 1024 - 256);
        // Too low a limit for the files kept besides: half of it.
        assert_eq!(connections_allowed(1024, Some(256)), 128);
        assert_eq!(connections_allowed(1024, Some(10)), 5);
        assert_eq!(connections_allowed(1024, Some(1)), 1);
    }
}
