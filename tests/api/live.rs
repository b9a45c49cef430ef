//! A server on a real socket for the tests that need one: started on a free port, stopped by
//! a switch, its gauges read from `/metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use simserve::state::AppState;
use simserve::{Application, Config};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::helpers::metric_value;

/// Starts an app with `change` applied; returns its address, a stop switch and its task.
pub async fn start(
    change: impl FnOnce(&mut Config),
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let (addr, stop, server, _) = start_with_state(change).await;
    (addr, stop, server)
}

/// [`start`], also returning the server's shared state.
pub async fn start_with_state(
    change: impl FnOnce(&mut Config),
) -> (
    SocketAddr,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
    AppState,
) {
    let mut config = Config::with_addr("127.0.0.1:0".parse().unwrap());
    change(&mut config);
    let (app, stop, server) = run(&config).await;
    (app.addr, stop, server, app.state)
}

/// A server started by [`start_with_admin`]: its addresses and shared state.
pub struct Started {
    pub addr: SocketAddr,
    /// The `--admin-addr` address, when there is one.
    pub admin: Option<SocketAddr>,
    pub state: AppState,
}

/// [`start`] with `--admin-addr` on a free loopback port.
pub async fn start_with_admin(
    change: impl FnOnce(&mut Config),
) -> (
    Started,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let mut config = Config::with_addr("127.0.0.1:0".parse().unwrap());
    config.admin_addr = Some("127.0.0.1:0".parse().unwrap());
    change(&mut config);
    run(&config).await
}

async fn run(
    config: &Config,
) -> (
    Started,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let app = Application::build(config).await.unwrap();
    let started = Started {
        addr: app.local_addr().unwrap(),
        admin: app.admin_addr().unwrap(),
        state: app.state().clone(),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    (started, stop, server)
}

/// The value of the sample `name` on the server's `/metrics` (see [`metric_value`]).
pub async fn gauge(addr: SocketAddr, name: &str) -> f64 {
    metric_value(&metrics_text(addr).await, name)
}

/// The `/metrics` text of the server at `addr`.
pub async fn metrics_text(addr: SocketAddr) -> String {
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until `name` on `/metrics` satisfies `ok`, for at most 20 s.
pub async fn until_gauge(addr: SocketAddr, name: &str, ok: impl Fn(f64) -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while !ok(gauge(addr, name).await) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "{name} stayed at {}",
        gauge(addr, name).await
    );
}

/// Reads what the server sends on `stream` within 10 s, without sending more.
pub async fn response_head(mut stream: TcpStream) -> String {
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    let read = async {
        while let Ok(n) = stream.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            response.extend_from_slice(&buffer[..n]);
            if response.ends_with(b"}") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer arrives");
    String::from_utf8_lossy(&response).into_owned()
}
