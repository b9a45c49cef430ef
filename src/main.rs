//! The `simserve` binary: parse configuration, start logging, serve until stopped.

use std::process::ExitCode;

use clap::Parser;
use simserve::{Application, Config, telemetry};

#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::init(&config);
    let served = match Application::build(&config).await {
        Ok(app) => app.run_until_stopped().await,
        Err(err) => Err(err),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(%err, addr = %config.addr, "simserve stopped with an error");
            ExitCode::FAILURE
        }
    }
}
