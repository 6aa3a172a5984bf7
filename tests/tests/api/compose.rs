//! docker-compose.yml is valid and runs what the README promises. There is no Docker engine
//! here; `docker-compose config` validates and resolves the file.

use std::process::Command;

#[test]
fn docker_compose_config_is_valid_and_has_every_service() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let output = Command::new("docker-compose")
        .args(["config", "--services"])
        .current_dir(root)
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
