//! Command-line and environment configuration: every flag has a `SIMSERVE_*` variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// simserve: similarity between embeddings over HTTP.
#[derive(Debug, Clone, Parser)]
#[command(name = "simserve", version, about)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (the bound address is logged).
    #[arg(long, env = "SIMSERVE_ADDR", default_value = "0.0.0.0:8080")]
    pub addr: SocketAddr,

    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[arg(long, env = "SIMSERVE_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Largest result a request may ask for, in numbers (dense matrix elements, or top-k and
    /// threshold entries); larger results get 422.
    #[arg(
        long,
        env = "SIMSERVE_MAX_OUTPUT_ELEMENTS",
        default_value_t = 16_777_216
    )]
    pub max_output_elements: usize,

    /// Longest time a request may take, from arrival to answer (e.g. `30s`, `500ms`); past
    /// it the client gets 503 and the computation stops.
    #[arg(long, env = "SIMSERVE_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,

    /// Log line format.
    #[arg(long, env = "SIMSERVE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter in `tracing` syntax, e.g. `info` or `simserve=debug,tower_http=info`.
    #[arg(long, env = "SIMSERVE_LOG", default_value = "info")]
    pub log: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// The defaults, with `addr` replaced: what tests start from.
    pub fn with_addr(addr: SocketAddr) -> Self {
        let mut config = Config::parse_from(["simserve"]);
        config.addr = addr;
        config
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_defaults_serve_on_port_8080_with_the_documented_limits() {
        let config = Config::try_parse_from(["simserve"]).unwrap();
        assert_eq!(config.addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.max_body_bytes, 64 * 1024 * 1024);
        assert_eq!(config.max_output_elements, 16_777_216);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.request_timeout, Duration::from_secs(30));
    }

    #[test]
    fn flags_override_the_defaults() {
        let config = Config::try_parse_from([
            "simserve",
            "--addr",
            "127.0.0.1:0",
            "--max-body-bytes",
            "1024",
            "--log-format",
            "json",
            "--request-timeout",
            "250ms",
        ])
        .unwrap();
        assert_eq!(config.addr.port(), 0);
        assert_eq!(config.max_body_bytes, 1024);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.request_timeout, Duration::from_millis(250));
        assert!(Config::try_parse_from(["simserve", "--addr", "nowhere"]).is_err());
    }

    #[test]
    fn every_flag_has_a_simserve_environment_variable_and_help() {
        let command = Config::command();
        for arg in command.get_arguments() {
            let id = arg.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            let env = arg.get_env().and_then(|e| e.to_str()).unwrap_or_default();
            let want = format!("SIMSERVE_{}", id.to_uppercase());
            assert_eq!(env, want, "{id}");
            assert!(arg.get_help().is_some(), "{id} has no help");
        }
    }
}
