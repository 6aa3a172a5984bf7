//! What the job-table tests share: a migrated database of their own, a plain job in it, and
//! workers that start attempts.

use std::time::Duration;

use kiln_core::{
    db::{
        self,
        jobs::{Job, NewJob},
        workers::{Beat, Registration, Starter},
    },
    jobs::JobKind,
};
use kiln_tests::Services;
use sqlx::PgPool;
use uuid::Uuid;

/// This test's own database, migrated.
pub async fn database() -> (Services, PgPool) {
    let services = Services::create(None).await.expect("services");
    let pool = services.db().await;
    db::migrate(&pool).await.expect("migrations");
    (services, pool)
}

/// A worker that starts attempts but never registered: its jobs count as held for one time-out
/// (30 s) after their start, as any job whose holder is unknown.
pub fn starter() -> Starter {
    Starter {
        worker: Uuid::now_v7(),
        heartbeat_timeout: std::time::Duration::from_secs(30),
    }
}

/// Inserts a system job of `kind` with an empty payload.
pub async fn insert(pool: &PgPool, kind: JobKind) -> Job {
    db::jobs::insert(
        pool,
        &NewJob {
            id: Uuid::now_v7(),
            tenant: None,
            kind,
            payload: serde_json::json!({}),
            max_attempts: 3,
            traceparent: None,
        },
    )
    .await
    .expect("insert")
}

/// A worker that heartbeats once now (and lists nothing it runs).
pub async fn register(pool: &PgPool, timeout: Duration) -> Starter {
    let worker = Registration {
        id: Uuid::now_v7(),
        host: "test-host".into(),
        pid: 1,
        queues: vec!["maintenance".into()],
    };
    db::workers::heartbeat(pool, &worker, &Beat::default())
        .await
        .expect("heartbeat");
    Starter {
        worker: worker.id,
        heartbeat_timeout: timeout,
    }
}

/// Moves a column of a job (or a worker) two hours into the past: ages are compared on
/// Postgres' clock, and backdating makes them old without waiting.
pub async fn backdate(pool: &PgPool, table: &str, column: &str, id: Uuid) {
    let sql = format!("UPDATE {table} SET {column} = now() - interval '2 hours' WHERE id = $1");
    // Names from this file only, never input.
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .execute(pool)
        .await
        .expect("backdate");
    assert_eq!(done.rows_affected(), 1);
}
