//! The `broker_queues` table: the work and retry queues schedulers have declared, so that a
//! topology whose names changed (another delivery limit or retry ladder) knows which queues of
//! the previous one to drain and delete.

use sqlx::PgExecutor;

use crate::queue::Role;

/// Records `queues` as declared now.
pub async fn record(db: impl PgExecutor<'_>, queues: &[(String, Role)]) -> Result<(), sqlx::Error> {
    let names: Vec<&str> = queues.iter().map(|(name, _)| name.as_str()).collect();
    let roles: Vec<&str> = queues.iter().map(|(_, role)| role.as_str()).collect();
    sqlx::query!(
        "INSERT INTO broker_queues (name, role)
         SELECT * FROM unnest($1::text[], $2::text[])
         ON CONFLICT (name) DO UPDATE SET last_declared_at = now()",
        &names as &[&str],
        &roles as &[&str],
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The queues no scheduler has declared for `after`, with their roles.
pub async fn undeclared_for(
    db: impl PgExecutor<'_>,
    after: std::time::Duration,
) -> Result<Vec<(String, Role)>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT name, role FROM broker_queues
         WHERE last_declared_at < now() - make_interval(secs => $1)
         ORDER BY name",
        after.as_secs_f64(),
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|row| Role::parse(&row.role).map(|role| (row.name, role)))
        .collect())
}

/// Forgets a queue that no longer exists on the broker.
pub async fn forget(db: impl PgExecutor<'_>, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM broker_queues WHERE name = $1", name)
        .execute(db)
        .await?;
    Ok(())
}
