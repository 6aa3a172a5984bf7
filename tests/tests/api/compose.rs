//! docker-compose.yml is valid and runs what the README promises. There is no Docker engine
//! here; `docker-compose config` validates and resolves the file.

use std::{path::Path, process::Command};

/// The repository root, where docker-compose.yml and deploy/ are.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

#[test]
fn docker_compose_config_is_valid_and_has_every_service() {
    let output = Command::new("docker-compose")
        .args(["config", "--services"])
        .current_dir(ROOT)
        .output()
        .expect("docker-compose is installed (apt-get install docker-compose)");
    assert!(
        output.status.success(),
        "docker-compose config failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let services = String::from_utf8_lossy(&output.stdout);
    for service in [
        "rabbitmq",
        "postgres",
        "redis",
        "mailpit",
        "nginx",
        "api",
        "worker",
        "scheduler",
    ] {
        assert!(
            services.lines().any(|s| s.trim() == service),
            "no {service} in {services}"
        );
    }
}

#[test]
fn the_monitoring_profile_adds_prometheus_and_grafana() {
    let services = docker_compose(&["--profile", "monitoring", "config", "--services"]);
    for service in [
        "prometheus",
        "grafana",
        "api",
        "worker",
        "scheduler",
        "nginx",
    ] {
        assert!(
            services.lines().any(|s| s.trim() == service),
            "no {service} in {services}"
        );
    }

    // What a plain `docker compose up` starts. Compose v2's `config` leaves out the services of
    // inactive profiles, but docker-compose 1.29's lists every service whatever the profiles, so
    // read the resolved file and also leave out the services that name a profile.
    let started = services_without_profiles(&docker_compose(&["config"]));
    for service in ["prometheus", "grafana"] {
        assert!(
            !started.iter().any(|s| s == service),
            "a plain `docker compose up` starts {service}: {started:?}"
        );
    }
    for service in ["api", "worker", "scheduler", "nginx"] {
        assert!(
            started.iter().any(|s| s == service),
            "a plain `docker compose up` does not start {service}: {started:?}"
        );
    }
}

#[test]
fn the_dashboard_and_the_scrape_config_cover_kiln() {
    let root = Path::new(ROOT);
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana/kiln.json"))
        .expect("deploy/grafana/kiln.json is readable");
    let dashboard: serde_json::Value =
        serde_json::from_str(&dashboard).expect("deploy/grafana/kiln.json is valid JSON");
    assert_eq!(dashboard["uid"], "kiln");
    let panels = dashboard["panels"]
        .as_array()
        .expect("the dashboard has a panels array");
    let mut exprs = Vec::new();
    collect_exprs(panels, &mut exprs);
    for metric in [
        "kiln_jobs_succeeded_total",
        "kiln_queue_ready_messages",
        "kiln_http_request_duration_seconds_bucket",
        "kiln_video_cpu_seconds_sum",
        "kiln_video_transcode_seconds_bucket",
    ] {
        assert!(
            exprs.iter().any(|expr| expr.contains(metric)),
            "no panel queries {metric}: {exprs:#?}"
        );
    }

    let prometheus = std::fs::read_to_string(root.join("deploy/prometheus/prometheus.yml"))
        .expect("deploy/prometheus/prometheus.yml is readable");
    for target in ["api:9090", "worker:9091", "scheduler:9092"] {
        assert!(
            prometheus.contains(target),
            "deploy/prometheus/prometheus.yml does not scrape {target}"
        );
    }
}

/// Runs `docker-compose` with `args` in the repository root and returns what it printed.
fn docker_compose(args: &[&str]) -> String {
    let output = Command::new("docker-compose")
        .args(args)
        .current_dir(ROOT)
        .output()
        .expect("docker-compose is installed (apt-get install docker-compose)");
    assert!(
        output.status.success(),
        "docker-compose {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The services of a resolved compose file (`docker-compose config`) that have no `profiles`:
/// the ones a plain `docker compose up` starts.
fn services_without_profiles(resolved: &str) -> Vec<String> {
    let mut services: Vec<(&str, bool)> = Vec::new();
    let mut in_services = false;
    for line in resolved.lines() {
        let key = line.trim();
        match line.len() - line.trim_start().len() {
            0 if !key.is_empty() => in_services = key == "services:",
            2 if in_services && key.ends_with(':') && !key.starts_with('-') => {
                services.push((key.trim_end_matches(':'), false));
            }
            4 if in_services && key.starts_with("profiles:") => {
                if let Some((_, profiled)) = services.last_mut() {
                    *profiled = true;
                }
            }
            _ => {}
        }
    }
    services
        .into_iter()
        .filter(|(_, profiled)| !profiled)
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Every query expression of `panels`, including the panels inside collapsed rows.
fn collect_exprs(panels: &[serde_json::Value], exprs: &mut Vec<String>) {
    for panel in panels {
        if let Some(targets) = panel["targets"].as_array() {
            exprs.extend(
                targets
                    .iter()
                    .filter_map(|target| target["expr"].as_str())
                    .map(str::to_owned),
            );
        }
        if let Some(nested) = panel["panels"].as_array() {
            collect_exprs(nested, exprs);
        }
    }
}

#[test]
fn only_nginx_is_published_to_other_machines_and_the_broker_is_not_guest() {
    let resolved = docker_compose(&["--profile", "monitoring", "config"]);
    let ports = published_ports(&resolved);
    for service in ["nginx", "mailpit", "rabbitmq", "grafana"] {
        assert!(
            ports.iter().any(|(s, _)| s == service),
            "{service}: {ports:?}"
        );
    }
    for (service, port) in ports {
        assert!(
            port.starts_with("127.0.0.1:") || service == "nginx",
            "{service} publishes {port} beyond 127.0.0.1"
        );
    }
    assert!(
        !resolved.contains("guest"),
        "a guest credential: {resolved}"
    );
    let nginx = std::fs::read_to_string(Path::new(ROOT).join("deploy/nginx.conf")).expect("conf");
    for directive in [
        "limit_req ",
        "limit_conn ",
        "client_body_timeout   30s",
        "client_header_timeout 10s",
    ] {
        assert!(nginx.contains(directive), "nginx.conf lacks {directive}");
    }
}

/// Every published port of a resolved compose file, with its service: the short form
/// (`127.0.0.1:8025:8025/tcp`) as written, the long form as `published: N`.
fn published_ports(resolved: &str) -> Vec<(String, String)> {
    let mut ports = Vec::new();
    let (mut service, mut in_ports) = (String::new(), false);
    for line in resolved.lines() {
        let indent = line.len() - line.trim_start().len();
        let key = line.trim();
        if indent == 2 && key.ends_with(':') {
            service = key.trim_end_matches(':').to_owned();
            in_ports = false;
        } else if indent == 4 && !key.starts_with('-') {
            in_ports = key == "ports:";
        } else if indent == 4
            && in_ports
            && let Some(port) = key.strip_prefix("- ")
        {
            ports.push((service.clone(), port.to_owned()));
        }
    }
    ports
}
