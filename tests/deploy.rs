//! The deployment files agree with the app: ports, probe paths, flags, limits and timeouts.
//! Its own test binary: it reads the manifests, the Dockerfile and CI's script, not the API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use serde_json::Value;
use simserve::Config;

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn text(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn seconds(text: &str) -> Duration {
    humantime::parse_duration(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// The container's environment, and the configuration simserve reads from it.
fn container() -> (Value, Config) {
    let deployment = yaml("deploy/kubernetes/deployment.yaml");
    let container = deployment["spec"]["template"]["spec"]["containers"][0].clone();
    let flags: HashMap<String, String> = Config::command()
        .get_arguments()
        .filter_map(|arg| {
            let env = arg.get_env()?.to_str()?.to_owned();
            Some((env, arg.get_long()?.to_owned()))
        })
        .collect();
    let mut args = vec!["simserve".to_owned()];
    for var in container["env"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap();
        let flag = flags.get(name).unwrap_or_else(|| {
            panic!("{name} is set in deployment.yaml but is no flag's variable")
        });
        args.push(format!("--{flag}"));
        args.push(var["value"].as_str().unwrap().to_owned());
    }
    let config = Config::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    (container, config)
}

#[test]
fn the_deployment_sets_only_real_flags_and_probes_real_routes_on_the_admin_port() {
    let (container, config) = container();
    let port = |name: &str| {
        let ports = container["ports"].as_array().unwrap();
        let port = ports.iter().find(|p| p["name"] == name);
        port.and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no port {name}"))
    };
    assert_eq!(port("http"), u64::from(config.addr.port()));
    let admin = config
        .admin_addr
        .expect("the deployment sets an admin address");
    assert_eq!(port("admin"), u64::from(admin.port()));
    let annotations =
        &yaml("deploy/kubernetes/deployment.yaml")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], admin.port().to_string());
    assert_eq!(
        status_of_admin_get(&config, "/metrics"),
        200,
        "prometheus.io/path"
    );
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], "admin", "{probe}");
        assert_eq!(
            status_of_admin_get(&config, path),
            200,
            "{probe}: GET {path}"
        );
    }
}

/// The status simserve's `--admin-addr` answers `GET path` with.
fn status_of_admin_get(config: &Config, path: &str) -> u16 {
    use tower::ServiceExt;
    // The kubelet's probes and Prometheus send the pod's address as `Host`.
    let request = axum::http::Request::get(path)
        .header(axum::http::header::HOST, "10.1.2.3:9090")
        .body(axum::body::Body::empty())
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let state = simserve::state::AppState::new(config);
    let admin = simserve::app::admin(state, config);
    let response = runtime.block_on(admin.oneshot(request)).unwrap();
    response.status().as_u16()
}

#[test]
fn the_deployment_sizes_compute_to_the_cpu_limit_and_outlasts_the_drain() {
    let (container, config) = container();
    let cpus: u32 = container["resources"]["limits"]["cpu"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(config.compute_permits, cpus);
    assert_eq!(config.compute_threads, cpus);

    let pod = &yaml("deploy/kubernetes/deployment.yaml")["spec"]["template"]["spec"];
    let grace = Duration::from_secs(pod["terminationGracePeriodSeconds"].as_u64().unwrap());
    let pause = Duration::from_secs(
        container["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap(),
    );
    assert!(grace > pause + config.shutdown_delay + config.shutdown_timeout);
    // A request admitted just before SIGTERM has its whole deadline to finish in the drain.
    assert!(config.shutdown_timeout > config.request_timeout);
    // The autoscaler owns the replica count; a count in the Deployment would reset it.
    let hpa = yaml("deploy/kubernetes/hpa.yaml");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);
    let deployment = yaml("deploy/kubernetes/deployment.yaml");
    assert!(deployment["spec"].get("replicas").is_none());
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"][0], "ALL");
}

#[test]
fn gateways_allow_the_body_limit_and_wait_longer_than_the_request_timeout() {
    let (_, config) = container();
    let service = yaml("deploy/kubernetes/service.yaml");
    let route = yaml("deploy/kubernetes/httproute.yaml");
    let backend = &route["spec"]["rules"][0]["backendRefs"][0];
    assert_eq!(backend["name"], service["metadata"]["name"]);
    assert_eq!(backend["port"], service["spec"]["ports"][0]["port"]);
    let timeouts = &route["spec"]["rules"][0]["timeouts"];
    assert!(seconds(timeouts["backendRequest"].as_str().unwrap()) > config.request_timeout);
    // The API's routes are published, and the tables only to GET (not POST /tables/reload).
    let matches = route["spec"]["rules"][0]["matches"].as_array().unwrap();
    let published = |prefix: &str| matches.iter().find(|m| m["path"]["value"] == prefix);
    for prefix in ["/similarity/", "/v2"] {
        assert!(published(prefix).is_some(), "{prefix}");
    }
    assert_eq!(published("/tables").unwrap()["method"], "GET");
    assert_eq!(route["spec"]["rules"].as_array().unwrap().len(), 1);

    let ingress = yaml("deploy/kubernetes/ingress.yaml");
    let annotations = &ingress["metadata"]["annotations"];
    let annotation = |key: &str| {
        annotations[format!("nginx.ingress.kubernetes.io/{key}")]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // 1 MiB above --max-body-bytes, so that simserve's own 413 reaches the client.
    assert_eq!(
        annotation("proxy-body-size"),
        format!("{}m", (config.max_body_bytes >> 20) + 1)
    );
    let read: u64 = annotation("proxy-read-timeout").parse().unwrap();
    assert!(Duration::from_secs(read) > config.request_timeout);
    // A retry's budget ends before the deadline, so a request that ran into it is not run
    // again on another replica.
    let retry: u64 = annotation("proxy-next-upstream-timeout").parse().unwrap();
    assert!(Duration::from_secs(retry) < config.request_timeout);

    let nginx = text("deploy/nginx/simserve.conf");
    let default = Config::with_addr("0.0.0.0:8080".parse().unwrap());
    // Just above --max-body-bytes, so that simserve's own 413 (problem+json) reaches the
    // client; at most 1 MiB above.
    let body = nginx
        .lines()
        .find_map(|l| l.trim().strip_prefix("client_max_body_size "))
        .unwrap();
    let body: usize = body
        .trim_end_matches(';')
        .trim_end_matches('m')
        .parse()
        .unwrap();
    assert!(body << 20 > default.max_body_bytes);
    assert!(body << 20 <= default.max_body_bytes + (1 << 20));
    let read = nginx
        .lines()
        .find_map(|l| l.trim().strip_prefix("proxy_read_timeout "))
        .unwrap();
    assert!(seconds(read.trim_end_matches(';')) > default.request_timeout);
    let idle = nginx
        .lines()
        .find_map(|l| l.trim().strip_prefix("keepalive_timeout "))
        .unwrap();
    assert!(seconds(idle.trim_end_matches(';')) < default.header_timeout);
}

#[test]
fn the_image_serves_the_default_port_checks_health_with_the_binary_and_is_built_like_ci() {
    let dockerfile = text("Dockerfile");
    let default = Config::with_addr("0.0.0.0:8080".parse().unwrap());
    assert!(dockerfile.contains(&format!("EXPOSE {}", default.addr.port())));
    assert!(dockerfile.contains("CMD [\"/usr/local/bin/simserve\", \"healthcheck\"]"));
    assert!(dockerfile.contains("USER 65532:65532"));
    assert!(!dockerfile.contains("target-cpu=native"));
    let build = "cargo build --release --locked --bin simserve";
    assert!(dockerfile.contains(&format!("RUN {build}")));
    assert!(
        text(".ci/run").contains(build),
        ".ci/run must build the image's way"
    );
}

#[test]
fn the_tables_overlay_mounts_a_read_only_volume_where_simserve_tables_points() {
    let kustomization = yaml("deploy/kubernetes-tables/kustomization.yaml");
    assert_eq!(kustomization["resources"][0], "../kubernetes");
    let patch = yaml("deploy/kubernetes-tables/deployment-patch.yaml");
    let pod = &patch["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(container["name"], "simserve");
    let env = &container["env"][0];
    assert_eq!(env["name"], "SIMSERVE_TABLES");
    let flag = Config::command()
        .get_arguments()
        .find(|arg| arg.get_env().and_then(|e| e.to_str()) == Some("SIMSERVE_TABLES"))
        .and_then(|arg| arg.get_long().map(str::to_owned));
    assert_eq!(flag.as_deref(), Some("tables"));
    let mount = &container["volumeMounts"][0];
    assert_eq!(mount["mountPath"], env["value"]);
    assert_eq!(mount["readOnly"], true);
    let volume = &pod["volumes"][0];
    assert_eq!(volume["name"], mount["name"]);
    let claim = &volume["persistentVolumeClaim"];
    assert_eq!(claim["readOnly"], true);
    let pvc = yaml("deploy/kubernetes-tables/pvc.yaml");
    assert_eq!(claim["claimName"], pvc["metadata"]["name"]);
    // The limit grows with the tables: above the base deployment's.
    let base = yaml("deploy/kubernetes/deployment.yaml");
    let gib = |v: &Value| {
        let text = v.as_str().unwrap();
        match text.strip_suffix("Gi") {
            Some(n) => n.parse::<f64>().unwrap() * 1024.0,
            None => text.strip_suffix("Mi").unwrap().parse::<f64>().unwrap(),
        }
    };
    let limit = |d: &Value| gib(&d["resources"]["limits"]["memory"]);
    assert!(limit(container) > limit(&base["spec"]["template"]["spec"]["containers"][0]));
}
