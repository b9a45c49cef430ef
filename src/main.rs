//! The `simserve` binary: parse configuration, then serve until stopped (or, with
//! `healthcheck`, probe a running server).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use simserve::compute::blas::{self, Products};
use simserve::config::Command;
use simserve::{Application, Config, healthcheck, telemetry};

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let config = Config::parse();
    if let Some(Command::Healthcheck) = config.command {
        let addr = config.admin_addr.unwrap_or(config.addr);
        return match healthcheck::probe(addr, Duration::from_secs(2)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("simserve healthcheck: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let _log = telemetry::init(&config);
    let threads = usize::try_from(config.compute_threads).unwrap_or(1);
    if let Err(err) = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .start_handler(|_| simserve::cpu::lower_priority())
        // Jobs catch their own panics (`cpu::on_compute_pool`); one escaping them anyway is
        // logged rather than aborting the process, rayon's default.
        .panic_handler(|_| tracing::error!("a panic escaped a compute job"))
        .build_global()
    {
        tracing::warn!(%err, "cannot size the compute thread pool");
    }
    match blas::start(&config.blas) {
        Ok(Products::OpenBlas(library)) => {
            tracing::info!(
                library = library.description(),
                "matrix products use OpenBLAS"
            );
        }
        Ok(Products::Faer(why)) => tracing::info!(%why, "matrix products use faer"),
        Err(err) => {
            tracing::error!(%err, "cannot use the BLAS library SIMSERVE_BLAS names");
            return ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(%err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(serve(&config));
    // Every request was answered or dropped by now. Computations of dropped requests may
    // still run on the compute pool, cancelled; they have nothing left to do and end with the
    // process. Table loads on the blocking pool get at most this long.
    runtime.shutdown_timeout(EXIT_GRACE);
    code
}

/// The longest exit waits for table loads on the blocking pool to end.
const EXIT_GRACE: Duration = Duration::from_secs(2);

async fn serve(config: &Config) -> ExitCode {
    let served = match Application::build(config).await {
        Ok(app) => app.run_until_stopped().await,
        Err(err) => Err(err),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(%err, "simserve stopped with an error");
            ExitCode::FAILURE
        }
    }
}
