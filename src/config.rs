//! Command-line and environment configuration: every flag has a `SIMSERVE_*` variable.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use tower_http::csrf::CsrfLayer;

use crate::compute::blas::BlasChoice;

/// simserve: similarity between embeddings over HTTP.
#[derive(Debug, Clone, Parser)]
#[command(name = "simserve", version, about)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port (the bound address is logged).
    #[arg(
        long,
        env = "SIMSERVE_ADDR",
        default_value = "0.0.0.0:8080",
        global = true
    )]
    pub addr: SocketAddr,

    /// A second address serving only the probes and metrics (`/healthz`, `/readyz`,
    /// `/metrics`, `/v2/health/live`, `/v2/health/ready`) on connections of their own,
    /// outside `--max-connections`, so that probes and scrapes are answered however many
    /// clients hold the main address; none by default (the main address serves them too).
    #[arg(long, env = "SIMSERVE_ADMIN_ADDR", global = true)]
    pub admin_addr: Option<SocketAddr>,

    /// Largest request body accepted, in bytes; larger bodies get 413.
    #[arg(long, env = "SIMSERVE_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024, value_parser = positive_count)]
    pub max_body_bytes: usize,

    /// Largest result a request may ask for, in numbers (dense matrix elements, or top-k and
    /// threshold entries; where ids are listed, an entry counts one number for every 8 bytes
    /// of the longest id); larger results get 422.
    #[arg(
        long,
        env = "SIMSERVE_MAX_OUTPUT_ELEMENTS",
        default_value_t = 16_777_216,
        value_parser = positive_count
    )]
    pub max_output_elements: usize,

    /// Longest time a request may take, from arrival to answer (e.g. `30s`, `500ms`); past
    /// it the client gets 503 and the computation stops. `POST /tables/reload` answers when
    /// its reload is done instead.
    #[arg(long, env = "SIMSERVE_REQUEST_TIMEOUT", value_parser = positive_duration, default_value = "30s")]
    pub request_timeout: Duration,

    /// Requests computing at once (parse, compute and encode); default: the CPUs available.
    #[arg(long, env = "SIMSERVE_COMPUTE_PERMITS", default_value_t = available_cpus(), value_parser = clap::value_parser!(u32).range(1..))]
    pub compute_permits: u32,

    /// Requests that may wait for a compute permit; past it requests get 503 at once.
    /// Default: 4 per CPU available.
    #[arg(long, env = "SIMSERVE_MAX_QUEUE", default_value_t = 4 * available_cpus() as usize)]
    pub max_queue: usize,

    /// Memory that request bodies and computations may reserve together, in bytes; a request
    /// that would pass it gets 503 at once (or 422 if it alone needs more).
    #[arg(
        long,
        env = "SIMSERVE_MEMORY_BUDGET_BYTES",
        default_value_t = 2 * 1024 * 1024 * 1024,
        value_parser = positive_count
    )]
    pub memory_budget_bytes: usize,

    /// Bytes of large request-body buffers (1 MiB or more, at most an eighth larger than their
    /// body) kept after their request, until unused for 2-3 s, for the next large body to
    /// reuse rather than fault in fresh pages; outside the memory budget. 0 keeps none.
    #[arg(
        long,
        env = "SIMSERVE_KEPT_BODY_BYTES",
        default_value_t = 64 * 1024 * 1024
    )]
    pub kept_body_bytes: usize,

    /// Connections served at once; past it, new ones wait in the listen backlog until one
    /// closes. A request's head may take 64 KiB (431 past it), which a connection holds while
    /// it arrives, outside the memory budget. Fewer (with a warning) where the open-files
    /// limit, raised to its hard limit at start, leaves no room for them beside 256 others.
    #[arg(long, env = "SIMSERVE_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Longest wait for a request's headers, and for the next request on an idle connection;
    /// slower connections are closed.
    #[arg(long, env = "SIMSERVE_HEADER_TIMEOUT", value_parser = positive_duration, default_value = "10s")]
    pub header_timeout: Duration,

    /// Longest time to receive a request body once its headers have arrived; slower clients
    /// get 408.
    #[arg(long, env = "SIMSERVE_BODY_TIMEOUT", value_parser = positive_duration, default_value = "15s")]
    pub body_timeout: Duration,

    /// Longest time a client may leave response bytes unread; the connection is then
    /// closed and the memory its answer held released.
    #[arg(long, env = "SIMSERVE_WRITE_TIMEOUT", value_parser = positive_duration, default_value = "30s")]
    pub write_timeout: Duration,

    /// After SIGTERM or SIGINT, how long in-flight requests may take to finish before the
    /// process exits anyway.
    #[arg(long, env = "SIMSERVE_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = duration)]
    pub shutdown_timeout: Duration,

    /// After SIGTERM or SIGINT, how long to keep accepting requests while `/readyz` answers
    /// 503, so that load balancers stop sending first (a built-in pre-stop pause).
    #[arg(long, env = "SIMSERVE_SHUTDOWN_DELAY", default_value = "0s", value_parser = duration)]
    pub shutdown_delay: Duration,

    /// Bearer tokens accepted on every route but the open ones, comma-separated; none means
    /// no authentication. `/healthz`, `/readyz`, `/metrics`, `/v2/health/live`,
    /// `/v2/health/ready` and the try-it page (`/`, `/assets/app.js`, `/assets/app.css`) stay
    /// open.
    #[arg(
        long,
        env = "SIMSERVE_API_KEYS",
        value_delimiter = ',',
        hide_env_values = true,
        value_parser = ApiKey
    )]
    pub api_keys: Vec<String>,

    /// Origins allowed to call simserve from a browser (CORS), comma-separated, or `*`;
    /// none means CORS stays off.
    #[arg(long, env = "SIMSERVE_CORS_ORIGINS", value_delimiter = ',', value_parser = origin)]
    pub cors_origins: Vec<String>,

    /// Origins whose browser pages may POST to simserve besides its own and those of
    /// `--cors-origins` (for a gateway that answers CORS itself), comma-separated, or `*` to
    /// let any page POST; browser pages of other origins get 403 for any method but GET, HEAD
    /// and OPTIONS.
    #[arg(long, env = "SIMSERVE_TRUSTED_ORIGINS", value_delimiter = ',', value_parser = origin)]
    pub trusted_origins: Vec<String>,

    /// Threads that computations share (the rayon pool, at most 4096); default: the CPUs
    /// available. Set it to the container's CPU limit.
    #[arg(long, env = "SIMSERVE_COMPUTE_THREADS", default_value_t = available_cpus(), value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub compute_threads: u32,

    /// The library for matrix products: `auto` uses OpenBLAS when the host has it (Debian:
    /// `libopenblas0`) unless the processor has AVX-512 and OpenBLAS's kernels do not use it
    /// (faer's do, and multiply faster), and faer's built-in GEMM otherwise; `off` always
    /// faer; a path that OpenBLAS library, whatever its kernels (start-up fails if it does not
    /// open). The start-up log says which and why. On an Intel processor newer than the
    /// OpenBLAS, which then runs narrower kernels, `OPENBLAS_CORETYPE=SkylakeX` has it use
    /// its 512-bit ones.
    /// OpenBLAS runs one thread per call; `--compute-threads` still sets the threads.
    #[arg(long, env = "SIMSERVE_BLAS", default_value = "auto")]
    pub blas: BlasChoice,

    /// Directory of server-side embedding tables: every `NAME.npy` is the table `NAME`, every
    /// 2-D float tensor `T` of `FILE.safetensors` the table `FILE.T`, and `NAME.ids.txt` holds
    /// table `NAME`'s row ids. Read at start (a file that fails stops the process) and again
    /// on SIGHUP or `POST /tables/reload`.
    #[arg(long, env = "SIMSERVE_TABLES")]
    pub tables: Option<std::path::PathBuf>,

    /// Log line format.
    #[arg(long, env = "SIMSERVE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter in `tracing` syntax, e.g. `info` or `simserve=debug,tower_http=info`.
    #[arg(long, env = "SIMSERVE_LOG", default_value = "info", value_parser = log_filter)]
    pub log: String,

    /// What to do; serving is the default.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Exit 0 if the server at `--admin-addr` (or, without one, `--addr`) answers
    /// `GET /healthz` with 200 within 2 s, else 1 (for container health checks).
    Healthcheck,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The longest duration a flag takes (a year): deadlines are instants this far ahead, and
/// one past the clock's range would panic every request that computes it.
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// A duration of at most [`MAX_DURATION`], such as `25s` or `0s`.
fn duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d > MAX_DURATION => Err("must be at most a year".to_owned()),
        Ok(d) => Ok(d),
        Err(err) => Err(err.to_string()),
    }
}

/// A duration above zero, such as `30s` or `500ms`, of at most [`MAX_DURATION`].
fn positive_duration(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        d if d.is_zero() => Err("must be longer than 0".to_owned()),
        d => Ok(d),
    }
}

/// A count above zero (a limit of 0 would refuse every request).
fn positive_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("must be at least 1 (a limit of 0 would refuse every request)".to_owned()),
        Ok(n) => Ok(n),
        Err(err) => Err(err.to_string()),
    }
}

/// Reads an API key: visible ASCII (what an `Authorization: Bearer` header can carry), not
/// blank. An empty or blank entry (an unset secret expanded into the variable) is refused
/// rather than read as "no authentication". Its errors never repeat the key.
#[derive(Debug, Clone, Copy)]
struct ApiKey;

impl clap::builder::TypedValueParser for ApiKey {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let refuse = |why: &str| {
            let message = format!("--api-keys (SIMSERVE_API_KEYS): {why}\n");
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, message).with_cmd(cmd)
        };
        let key = value.to_str().unwrap_or("\u{fffd}").trim();
        if key.is_empty() {
            return Err(refuse(
                "an API key is empty; leave the flag and the variable out to run without \
                 authentication",
            ));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(refuse(
                "an API key holds a character other than visible ASCII, which a bearer token \
                 cannot carry",
            ));
        }
        Ok(key.to_owned())
    }
}

/// A log filter in `tracing` syntax, checked. A directive that is a bare word (no `=`, no
/// span in `[…]`) must be a level: `tracing` would read a misspelt one (`warning`) as a
/// target's name and log nothing else.
fn log_filter(text: &str) -> Result<String, String> {
    let levels = "error, warn, info, debug, trace or off";
    let bare = |directive: &str| {
        directive
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_:-".contains(c))
    };
    for directive in text.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if bare(directive)
            && directive
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .is_err()
        {
            return Err(format!(
                "{directive:?} is not a level ({levels}); \
                 give a target's level as TARGET=LEVEL, e.g. simserve=debug"
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(text)
        .map(|_| text.to_owned())
        .map_err(|err| format!("not a log filter: {err}"))
}

/// `*`, or an origin as browsers send it in `Origin`: `http` or `https`, `://`, a host in
/// lower case (a name, an IPv4 address or a bracketed IPv6 one) and an optional port, such
/// as `https://app.example.com` or `http://localhost:3000`.
fn origin(text: &str) -> Result<String, String> {
    let text = text.trim();
    // Every such origin is one tower-http's cross-origin check can trust too.
    let trusted = |text| CsrfLayer::new().add_trusted_origin(text).is_ok();
    if text == "*" || (is_origin(text) && trusted(text)) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not an origin; expected * or scheme://host[:port] in lower case, \
             e.g. https://app.example.com"
        ))
    }
}

/// Whether `text` is an origin as [`origin`] takes it.
fn is_origin(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once("://") else {
        return false;
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => (host, Some(port)),
        _ => (rest, None),
    };
    let port_ok = port.is_none_or(|port| {
        !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u16>().is_ok_and(|port| port > 0)
    });
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => {
            !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b))
                && !host.starts_with(['.', '-'])
                && !host.ends_with(['.', '-'])
        }
    };
    matches!(scheme, "http" | "https") && host_ok && port_ok
}

/// The CPUs this process may use (1 if unknown).
fn available_cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
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
        assert!(config.compute_permits >= 1);
        assert_eq!(config.max_queue, 4 * config.compute_permits as usize);
        assert_eq!(config.max_connections, 1024);
        assert_eq!(config.memory_budget_bytes, 2 << 30);
        assert_eq!(config.shutdown_timeout, Duration::from_secs(25));
        assert_eq!(config.shutdown_delay, Duration::ZERO);
        assert!(config.api_keys.is_empty() && config.cors_origins.is_empty());
        assert!(config.command.is_none());
        let check = Config::try_parse_from(["simserve", "--addr", "127.0.0.1:9", "healthcheck"]);
        assert!(matches!(check.unwrap().command, Some(Command::Healthcheck)));
        // The address may follow the command too.
        let check = Config::try_parse_from(["simserve", "healthcheck", "--addr", "127.0.0.1:9"]);
        let check = check.unwrap();
        assert!(matches!(check.command, Some(Command::Healthcheck)));
        assert_eq!(check.addr, "127.0.0.1:9".parse().unwrap());
        assert_eq!(config.admin_addr, None);
        let check =
            Config::try_parse_from(["simserve", "healthcheck", "--admin-addr", "[::]:9090"]);
        assert_eq!(
            check.unwrap().admin_addr,
            Some("[::]:9090".parse().unwrap())
        );
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
        assert!(Config::try_parse_from(["simserve", "--compute-permits", "0"]).is_err());
        for flag in [
            "--request-timeout",
            "--header-timeout",
            "--body-timeout",
            "--write-timeout",
        ] {
            assert!(
                Config::try_parse_from(["simserve", flag, "0s"]).is_err(),
                "{flag}"
            );
        }
        // Past a year, a deadline could pass the clock's range.
        for flag in [
            "--request-timeout",
            "--header-timeout",
            "--body-timeout",
            "--write-timeout",
            "--shutdown-timeout",
            "--shutdown-delay",
        ] {
            let parsed = Config::try_parse_from(["simserve", flag, "500000000000y"]);
            assert!(parsed.is_err(), "{flag}");
            assert!(Config::try_parse_from(["simserve", flag, "365days"]).is_ok());
        }
        // A limit of 0 would refuse every request.
        for flag in [
            "--max-body-bytes",
            "--max-output-elements",
            "--memory-budget-bytes",
        ] {
            assert!(
                Config::try_parse_from(["simserve", flag, "0"]).is_err(),
                "{flag}"
            );
        }
        assert!(Config::try_parse_from(["simserve", "--compute-threads", "4097"]).is_err());
        assert!(Config::try_parse_from(["simserve", "--log", "simserve=[[bad"]).is_err());
        for misspelt in ["warning", "inf", "simserve=debug,warning"] {
            let refused = Config::try_parse_from(["simserve", "--log", misspelt]);
            let message = refused.unwrap_err().to_string();
            assert!(message.contains("is not a level"), "{misspelt}: {message}");
        }
        for level in [
            "INFO",
            "warn",
            "off",
            "3",
            "[request]",
            "simserve[request]=debug",
            "info,hyper=off",
        ] {
            assert!(
                Config::try_parse_from(["simserve", "--log", level]).is_ok(),
                "{level}"
            );
        }
        let filtered = Config::try_parse_from(["simserve", "--log", "simserve=debug,info"]);
        assert_eq!(filtered.unwrap().log, "simserve=debug,info");
    }

    #[test]
    fn lists_are_comma_separated_and_origins_are_checked() {
        let config = Config::try_parse_from([
            "simserve",
            "--api-keys",
            "k1,k2",
            "--cors-origins",
            "https://a.example,http://localhost:3000",
        ])
        .unwrap();
        assert_eq!(config.api_keys, ["k1", "k2"]);
        assert_eq!(config.cors_origins.len(), 2);
        for bad in [
            "a.example",
            "https://a.example/path",
            "ftp://x",
            "https://",
            "https://App.Example.com",
            "https://b.example?x",
            "https://c.example:99999",
            "https://c.example:0",
            "https://c.example:",
            "http://*",
            "https://user@a.example",
            "https://[::1",
        ] {
            for flag in ["--cors-origins", "--trusted-origins"] {
                let parsed = Config::try_parse_from(["simserve", flag, bad]);
                assert!(parsed.is_err(), "{flag} {bad}");
            }
        }
        for good in [
            "*",
            "http://[::1]:8080",
            "http://127.0.0.1:3000",
            "https://a-b.example",
        ] {
            let parsed = Config::try_parse_from(["simserve", "--cors-origins", good]);
            assert_eq!(parsed.unwrap().cors_origins, [good]);
            let parsed = Config::try_parse_from(["simserve", "--trusted-origins", good]);
            assert_eq!(parsed.unwrap().trusted_origins, [good]);
        }
        // A blank key (an empty secret expanded) is refused, not read as no authentication.
        for bad in [" ", "k1,", ",", "k1, ,k2", "ключ", "a b"] {
            let parsed = Config::try_parse_from(["simserve", "--api-keys", bad]);
            assert!(parsed.is_err(), "{bad:?}");
        }
        let secret = Config::try_parse_from(["simserve", "--api-keys", "k1,secret ключ"]);
        let error = secret.unwrap_err().to_string();
        assert!(
            error.contains("visible ASCII") && !error.contains("secret"),
            "{error}"
        );
        let spaced = Config::try_parse_from(["simserve", "--api-keys", " k1 , k2 "]);
        assert_eq!(spaced.unwrap().api_keys, ["k1", "k2"]);
    }

    #[test]
    fn the_readme_documents_every_flag_with_its_variable() {
        let readme = include_str!("../README.md");
        for arg in Config::command().get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "version") {
                continue;
            }
            let env = arg.get_env().and_then(|e| e.to_str()).unwrap_or_default();
            let row = format!("| `--{long}` | `{env}` |");
            assert!(readme.contains(&row), "README.md has no row {row}");
        }
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
