//! What the job-table tests share: a migrated database of their own and a plain job in it.

use kiln_core::{
    db::{
        self,
        jobs::{Job, NewJob},
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
