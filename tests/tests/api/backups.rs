//! Postgres backups: dump, store, restore into a fresh database; corrupt files and failing
//! dumps are refused with clear errors.

use kiln_tests::{Options, Services, images, run, spawn_app, spawn_app_with};
use reqwest::{Method, StatusCode};

async fn back_up(app: &kiln_tests::TestApp) -> serde_json::Value {
    back_up_with(app, app.env()).await
}

/// Enqueues a backup with `env` and waits for its job to finish.
async fn back_up_with(
    app: &kiln_tests::TestApp,
    env: &std::collections::HashMap<String, String>,
) -> serde_json::Value {
    let output = run("kiln-scheduler", &["enqueue", "nightly-backup"], env).expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let job_id = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    app.wait_for_job(&job_id).await
}

async fn ids(pool: &sqlx::PgPool, table: &str) -> Vec<uuid::Uuid> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT id FROM {table} ORDER BY id"
    )))
    .fetch_all(pool)
    .await
    .expect("ids")
}

#[tokio::test]
async fn a_backup_restores_into_a_fresh_database_with_the_same_rows() {
    let app = spawn_app().await;
    let answer = app.upload(images::sideways_jpeg(64, 32)).await;
    assert_eq!(
        app.wait_for_media(answer.body["id"].as_str().expect("id"))
            .await["status"],
        "ready"
    );

    let job = back_up(&app).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let listed = app.admin(Method::GET, "/v1/admin/backups").await;
    assert_eq!(listed.status, StatusCode::OK);
    let backup = listed.body["backups"][0].clone();
    assert!(backup["bytes"].as_i64().is_some_and(|b| b > 0), "{backup}");
    assert_eq!(backup["sha256"].as_str().map(str::len), Some(64));
    assert!(
        backup["storage_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("backups/") && k.ends_with(".dump.zst"))
    );
    assert!(
        backup["server_version"]
            .as_str()
            .is_some_and(|v| !v.is_empty())
    );

    let target = Services::create(None).await.expect("target database");
    let id = backup["id"].as_str().expect("id");
    let restored = run(
        "kiln-api",
        &["backups", "restore", id, "--into", &target.database_url],
        app.env(),
    )
    .expect("runs");
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );

    let source = app.services.db().await;
    let copy = target.db().await;
    for table in ["media", "jobs", "api_keys"] {
        assert_eq!(
            ids(&source, table).await,
            ids(&copy, table).await,
            "{table} differs after restore"
        );
    }
    let variants: i64 = sqlx::query_scalar("SELECT count(*) FROM media_variants")
        .fetch_one(&copy)
        .await
        .expect("count");
    assert_eq!(variants, 8);
}

#[tokio::test]
async fn a_backup_file_with_a_flipped_byte_is_refused_by_restore() {
    let app = spawn_app().await;
    assert_eq!(back_up(&app).await["status"], "succeeded");
    let backup = app.admin(Method::GET, "/v1/admin/backups").await.body["backups"][0].clone();
    let path = app
        .services
        .storage
        .path()
        .join(backup["storage_key"].as_str().expect("key"));
    let mut bytes = std::fs::read(&path).expect("backup file");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, bytes).expect("corrupt it");

    let target = Services::create(None).await.expect("target database");
    let restored = run(
        "kiln-api",
        &[
            "backups",
            "restore",
            backup["id"].as_str().expect("id"),
            "--into",
            &target.database_url,
        ],
        app.env(),
    )
    .expect("runs");

    assert!(!restored.status.success());
    let stderr = String::from_utf8_lossy(&restored.stderr);
    assert!(
        stderr.contains("checksum") && stderr.contains("refusing"),
        "{stderr}"
    );
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
            .fetch_one(&target.db().await)
            .await
            .expect("count");
    assert_eq!(tables, 0, "nothing was touched");
}

#[tokio::test]
async fn a_failing_pg_dump_ends_dead_with_its_stderr() {
    let app = spawn_app_with(Options::default().env(
        "KILN_BACKUP_DATABASE_URL",
        "postgres://postgres@127.0.0.1:1/nowhere",
    ))
    .await;

    let job = back_up(&app).await;

    assert_eq!(job["status"], "dead", "{job}");
    assert_eq!(job["attempts"], 1);
    let error = job["last_error"].as_str().expect("error");
    assert!(
        error.contains("pg_dump failed") && error.contains("127.0.0.1"),
        "{error}"
    );
}

#[tokio::test]
async fn retention_prunes_old_backups_from_storage_and_table_alike() {
    let app = spawn_app_with(
        Options::default()
            .env("KILN_BACKUP_KEEP_LAST", "2")
            .env("KILN_BACKUP_KEEP_DAYS", "0"),
    )
    .await;
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let job = back_up(&app).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        jobs.push(job["id"].as_str().expect("id").to_owned());
    }

    // Pruning follows each backup's commit, so the third job may read `succeeded` a moment
    // before the oldest backup is gone.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let backups = loop {
        let listed = app.admin(Method::GET, "/v1/admin/backups").await;
        let backups = listed.body["backups"].as_array().expect("list").clone();
        if backups.len() <= 2 || tokio::time::Instant::now() > deadline {
            break backups;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(backups.len(), 2, "{backups:?}");
    let kept_jobs: Vec<&str> = backups
        .iter()
        .filter_map(|b| b["job_id"].as_str())
        .collect();
    assert_eq!(
        kept_jobs,
        [jobs[2].as_str(), jobs[1].as_str()],
        "the newest two, newest first"
    );
    let mut stored: Vec<String> = app
        .stored_files()
        .iter()
        .map(|p| p.display().to_string())
        .filter(|p| p.starts_with("backups/"))
        .collect();
    stored.sort();
    let mut listed_keys: Vec<String> = backups
        .iter()
        .filter_map(|b| b["storage_key"].as_str().map(str::to_owned))
        .collect();
    listed_keys.sort();
    assert_eq!(
        stored, listed_keys,
        "the pruned file is gone from storage too"
    );
}

/// A directory of `pg_dump` and `pg_restore` wrappers that note their arguments, the password
/// they were given in `PGPASSWORD`, and the permissions of restore's downloaded dump (under
/// `TMPDIR`, set to the same directory), then run the real tool.
fn recording_tools() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("kiln-pg-tools-")
        .tempdir()
        .expect("dir");
    for tool in ["pg_dump", "pg_restore"] {
        let script = format!(
            "#!/bin/sh\n\
             d='{dir}'\n\
             printf '%s\\n' \"$*\" >> \"$d/argv\"\n\
             printf '%s\\n' \"${{PGPASSWORD:-}}\" >> \"$d/passwords\"\n\
             for f in \"$d\"/kiln-restore-*; do [ -e \"$f\" ] && stat -c %a \"$f\" >> \"$d/modes\"; done\n\
             exec /usr/bin/{tool} \"$@\"\n",
            dir = dir.path().display()
        );
        let path = dir.path().join(tool);
        std::fs::write(&path, script).expect("script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir
}

#[tokio::test]
async fn a_storage_failure_mid_dump_fails_the_attempt_at_once_and_no_password_is_on_any_argv() {
    let tools = recording_tools();
    let services_url = |url: &str| url.replacen("postgres@", "postgres:s3cret-pw@", 1);
    let path = format!(
        "{}:{}",
        tools.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The worker is started below, once the backup URL (with the database's name) is known.
    let app = spawn_app_with(Options {
        without_worker: true,
        ..Options::default()
            .env("KILN_TEST_FAIL_STORAGE_WRITES", "1")
            .env("TMPDIR", tools.path().display().to_string())
            .env("PATH", path)
    })
    .await;
    let db = app.services.db().await;
    // A dump bigger than a pipe's buffer: without a reader, pg_dump would block on its output.
    sqlx::query("CREATE TABLE filler AS SELECT md5(n::text) || md5(random()::text) AS t FROM generate_series(1, 60000) n")
        .execute(&db)
        .await
        .expect("filler");
    let mut env = app.env().clone();
    env.insert(
        "KILN_BACKUP_DATABASE_URL".into(),
        services_url(&env["DATABASE_URL"]),
    );
    let job = {
        let worker = kiln_tests::Process::spawn("kiln-worker", &[], &env).expect("worker");
        worker.wait_for_log("consuming").await.expect("consuming");
        back_up_with(&app, &env).await
    };

    // The first attempt's upload failed mid-dump: killed and retried, not left to its time limit.
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2, "{job}");
    let backups: Vec<_> = app
        .stored_files()
        .into_iter()
        .filter(|p| p.starts_with("backups"))
        .collect();
    assert_eq!(
        backups.len(),
        1,
        "the aborted upload left nothing: {backups:?}"
    );

    let listed = app.admin(Method::GET, "/v1/admin/backups").await;
    let id = listed.body["backups"][0]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let target = Services::create(None).await.expect("target database");
    let restored = run(
        "kiln-api",
        &[
            "backups",
            "restore",
            &id,
            "--into",
            &services_url(&target.database_url),
        ],
        &env,
    )
    .expect("runs");
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );

    let read = |name: &str| std::fs::read_to_string(tools.path().join(name)).unwrap_or_default();
    let argv = read("argv");
    assert!(argv.contains("--dbname"), "{argv}");
    assert!(
        !argv.contains("s3cret-pw"),
        "a password on a command line: {argv}"
    );
    assert!(
        read("passwords").lines().all(|p| p == "s3cret-pw"),
        "{}",
        read("passwords")
    );
    assert_eq!(
        read("passwords").lines().count(),
        3,
        "two dumps and a restore"
    );
    assert_eq!(
        read("modes").trim(),
        "600",
        "the downloaded dump is private"
    );
    println!("storage failed mid-dump: attempt 2 succeeded; argv without password; dump 0600");
}
