//! Publish records (`published_at`), written a moment late and in bulk.
//!
//! `published_at` exists for the outbox relay: a row that has none after the relay's grace
//! period gets its message sent again. Nothing else waits on it, and a job that has started
//! needs no record: the relay leaves it alone, and the attempt's outcome records the publish
//! (a started job was evidently published). So a producer need not wait for the write: its
//! confirmed ids are kept here for [`DELAY`] and written together, by which time most of those
//! jobs have already started and need no write at all.
//!
//! Losing a record never loses a job: the relay sends the job's message a second time. The row
//! makes that copy a no-op if the job has finished by then; if the job is still running, the copy
//! starts a new attempt alongside it (as a redelivery after a crash would). So records are not
//! given up lightly: a failed write is retried (up to [`MAX_RETRYING`] records), pending records
//! are written on flush and when the last handle is dropped, and [`DELAY`] stays well under the
//! relay's grace period, so on a healthy system the relay never sees these rows.

use std::{collections::VecDeque, time::Duration};

use sqlx::PgPool;
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use uuid::Uuid;

/// How long a record waits for its job to start (which makes it unnecessary).
const DELAY: Duration = Duration::from_secs(1);

/// Rows per statement at most.
const MAX_STATEMENT: usize = 1024;

/// Records waiting in the channel before producers wait for the writer.
const BACKLOG: usize = 16 * 1024;

/// Records kept for another try after a failed write (Postgres down); beyond this the relay
/// covers them.
const MAX_RETRYING: usize = 64 * 1024;

enum Note {
    Published(Uuid),
    /// Write everything noted so far, then answer.
    Flush(oneshot::Sender<()>),
}

/// The deferred writer; cheap to clone. Its task lives as long as any clone and writes what is
/// left when the last one is dropped.
#[derive(Clone)]
pub(super) struct PublishedLater {
    notes: mpsc::Sender<Note>,
}

impl PublishedLater {
    /// Starts the writer's task on the current runtime.
    pub(super) fn spawn(db: PgPool) -> Self {
        let (notes, receiver) = mpsc::channel(BACKLOG);
        tokio::spawn(run(db, receiver));
        Self { notes }
    }

    /// Notes that the broker confirmed the job's message; written within about [`DELAY`].
    pub(super) async fn note(&self, id: Uuid) {
        // The task only ends once every sender is gone, so this cannot fail while `self` lives.
        let _ = self.notes.send(Note::Published(id)).await;
    }

    /// Writes every record noted so far (at shutdown, and in tests).
    pub(super) async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.notes.send(Note::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

async fn run(db: PgPool, mut notes: mpsc::Receiver<Note>) {
    let mut pending: VecDeque<(Instant, Uuid)> = VecDeque::new();
    let mut received = Vec::with_capacity(MAX_STATEMENT);
    loop {
        // With nothing pending the timer is parked far away; a note wakes the loop first.
        let due = pending.front().map_or_else(
            || Instant::now() + Duration::from_secs(3600),
            |(at, _)| *at + DELAY,
        );
        tokio::select! {
            count = notes.recv_many(&mut received, MAX_STATEMENT) => {
                if count == 0 {
                    let ids = pending.drain(..).map(|(_, id)| id).collect();
                    write(&db, ids).await;
                    return;
                }
                for note in received.drain(..) {
                    match note {
                        Note::Published(id) => pending.push_back((Instant::now(), id)),
                        Note::Flush(done) => {
                            let ids = pending.drain(..).map(|(_, id)| id).collect();
                            let failed = write(&db, ids).await;
                            retry_later(&mut pending, failed, Instant::now());
                            let _ = done.send(());
                        }
                    }
                }
            }
            () = tokio::time::sleep_until(due) => {
                let now = Instant::now();
                let mut ids = Vec::new();
                while pending.front().is_some_and(|(at, _)| *at + DELAY <= now) {
                    ids.extend(pending.pop_front().map(|(_, id)| id));
                }
                let failed = write(&db, ids).await;
                retry_later(&mut pending, failed, now);
            }
        }
    }
}

/// Keeps failed records for another try after [`DELAY`], as many as [`MAX_RETRYING`] allows.
/// `now` must be no earlier than anything pending, which keeps `pending` in time order.
fn retry_later(pending: &mut VecDeque<(Instant, Uuid)>, failed: Vec<Uuid>, now: Instant) {
    let room = MAX_RETRYING.saturating_sub(pending.len());
    if failed.len() > room {
        tracing::warn!(dropped = failed.len() - room, "publish records given up");
    }
    pending.extend(failed.into_iter().take(room).map(|id| (now, id)));
}

/// Sets `published_at` where it is still missing on a job the relay would send again (one not
/// started yet: a failed one has its publish recorded by its failure, or, when its retry waits
/// in Postgres, must stay unrecorded until the relay sends that retry). Rows are found by key alone (see `job_writes::start_round`); the
/// others are neither locked nor written, and rows locked right now are skipped rather than
/// waited for: their job is being started. Never waiting, this cannot deadlock. Returns the ids
/// not written: after a failure the rest are not tried (Postgres is probably down, and each try
/// could wait out the pool's acquire timeout while notes pile up).
async fn write(db: &PgPool, ids: Vec<Uuid>) -> Vec<Uuid> {
    for (index, chunk) in ids.chunks(MAX_STATEMENT).enumerate() {
        let written = sqlx::query!(
            r#"WITH noted AS MATERIALIZED (
                 SELECT jobs.id,
                        jobs.published_at IS NULL
                        AND jobs.status = 'queued' AS unrecorded
                 FROM unnest($1::uuid[]) AS noted(id) JOIN jobs USING (id)),
               locked AS (
                 SELECT jobs.id,
                        jobs.published_at IS NULL
                        AND jobs.status = 'queued' AS unrecorded
                 FROM noted JOIN jobs USING (id) WHERE noted.unrecorded
                 FOR NO KEY UPDATE OF jobs SKIP LOCKED)
               UPDATE jobs SET published_at = now()
               FROM locked WHERE jobs.id = locked.id AND locked.unrecorded"#,
            chunk,
        )
        .execute(db)
        .await;
        if let Err(error) = written {
            let unwritten = ids[index * MAX_STATEMENT..].to_vec();
            tracing::warn!(%error, jobs = unwritten.len(), "could not record publishes");
            return unwritten;
        }
    }
    Vec::new()
}
