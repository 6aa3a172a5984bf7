//! Recording an upload that is stored and hashed (by `POST /v1/media` or a finished tus
//! upload): the header's dimensions are checked, then the media and its job are committed in
//! one transaction with the day's quota, or, when the tenant has these bytes already, a media
//! sharing their files.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use kiln_core::{
    db,
    jobs::{JobKind, MediaPayload},
    media_format::MediaFormat,
};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::view::MediaView;
use crate::{error::ApiError, state::AppState};

/// Whose upload it is.
#[derive(Debug, Clone)]
pub struct Uploader {
    pub tenant: String,
    /// The key that uploaded it, or that made the upload token it came with.
    pub key_id: Uuid,
}

/// What was received, stored at its original key.
#[derive(Debug)]
pub struct Received {
    pub format: MediaFormat,
    pub bytes: u64,
    pub sha256: String,
    /// The first bytes (up to 256 KiB), for the header.
    pub head: Vec<u8>,
}

/// An upload in storage, ready to record.
#[derive(Debug)]
pub struct Stored {
    pub media_id: Uuid,
    pub original_key: String,
    pub received: Received,
    /// The app's metadata to attach (an upload token's).
    pub metadata: serde_json::Value,
}

/// Checks the header and records the upload; on a refusal the stored original is removed.
/// With `claim` (a tus upload's id), the upload's row is marked as having made this media in
/// the same transaction, and a second finisher gets 409 `upload_finished`.
pub async fn record(
    state: &AppState,
    uploader: &Uploader,
    stored: Stored,
    trace: Option<String>,
    claim: Option<Uuid>,
) -> Result<Response, ApiError> {
    let Stored {
        media_id,
        original_key,
        received,
        metadata,
    } = stored;
    let inspected = match super::inspect::inspect(state, &received, &original_key).await {
        Ok(inspected) => inspected,
        Err(error) => {
            state.storage.delete(&original_key).await.ok();
            return Err(error);
        }
    };

    let job_id = Uuid::now_v7();
    let media = NewMediaValues {
        bytes: i64::try_from(received.bytes).unwrap_or(i64::MAX),
        width: i32::try_from(inspected.width).unwrap_or(i32::MAX),
        height: i32::try_from(inspected.height).unwrap_or(i32::MAX),
    };
    let video = inspected.video.as_ref().map(|info| info.facts());
    let kind = if video.is_some() {
        JobKind::Video
    } else {
        JobKind::Media
    };
    // Read before the transaction: it may ask Postgres, which must not wait for a second
    // connection while this one holds the content lock.
    let mode = super::get::url_mode(state, &uploader.tenant, None).await?;
    let recorded = async {
        let mut tx = state.db.begin().await?;
        claim_for(&mut tx, claim, media_id).await?;
        // Held to the commit: of two uploads of the same bytes, the second sees the first.
        // Taken before the tenant's usage row, in the order the media job takes them.
        db::media::lock_content(&mut tx, &uploader.tenant, &received.sha256).await?;
        take_upload_quota(state, &mut tx, &uploader.tenant, media.bytes).await?;
        if let Some(source) =
            db::media::find_content(&mut tx, &uploader.tenant, &received.sha256).await?
        {
            let duplicate = Duplicate {
                id: media_id,
                bytes: media.bytes,
                source,
                metadata: metadata.clone(),
            };
            return Ok(Recorded::Duplicate(
                record_duplicate(state, tx, uploader, duplicate, trace.clone(), mode).await?,
            ));
        }
        let job = db::jobs::insert(
            &mut *tx,
            &db::jobs::NewJob {
                id: job_id,
                tenant: Some(&uploader.tenant),
                kind,
                payload: json!(MediaPayload { media_id }),
                max_attempts: state.config.max_attempts(kind),
                traceparent: trace.clone(),
            },
        )
        .await?;
        db::media::insert(
            &mut *tx,
            &db::media::NewMedia {
                id: media_id,
                tenant: &uploader.tenant,
                content_type: received.format.content_type(),
                bytes: media.bytes,
                sha256: &received.sha256,
                width: media.width,
                height: media.height,
                original_key: &original_key,
                job_id,
                api_key_id: uploader.key_id,
                metadata: &metadata,
                video: video.as_ref(),
            },
        )
        .await?;
        tx.commit().await?;
        Ok::<_, ApiError>(Recorded::New(job))
    }
    .await;
    let job = match recorded {
        Ok(Recorded::New(job)) => job,
        Ok(Recorded::Duplicate(answer)) => {
            // The tenant had these bytes already: the new media shares their files.
            if let Err(error) = state.storage.delete(&original_key).await {
                tracing::warn!(%error, key = original_key, "could not remove a duplicate upload");
            }
            return Ok(answer);
        }
        // A concurrent finish of the same tus upload recorded this very file: keep it.
        Err(error) if error.code() == "upload_finished" => return Err(error),
        Err(error) => {
            state.storage.delete(&original_key).await.ok();
            return Err(error);
        }
    };

    // The job is committed: from here on nothing the client sent can be lost. If the broker is
    // down the row stays unpublished and the outbox relay sends it later.
    kiln_core::queue::publish_committed(&state.writes, &state.publisher, &job).await;
    metrics::counter!("kiln_jobs_enqueued_total", "kind" => kind.as_str()).increment(1);
    tracing::info!(media.id = %media_id, job.id = %job_id, bytes = received.bytes, "upload accepted");

    // Answered from what is in hand, not re-read: a failed read now would tell the client its
    // committed upload failed, and its retry would store a duplicate.
    let view = MediaView {
        id: media_id,
        status: "pending".to_owned(),
        content_type: received.format.content_type().to_owned(),
        bytes: media.bytes,
        sha256: received.sha256,
        width: media.width,
        height: media.height,
        error: None,
        metadata,
        placeholder: None,
        video,
        progress: None,
        variants: Vec::new(),
        variant_urls: Default::default(),
        // Both rows default to now(), the transaction's start, so the job's is the media's.
        created_at: job.created_at,
        updated_at: job.created_at,
    };
    Ok(accepted(view, Some(job_id), None))
}

/// Marks tus upload `claim` as having made `media_id`, once.
async fn claim_for(
    tx: &mut sqlx::PgConnection,
    claim: Option<Uuid>,
    media_id: Uuid,
) -> Result<(), ApiError> {
    let Some(upload) = claim else {
        return Ok(());
    };
    match db::tus::finish(tx, upload, media_id).await? {
        db::tus::Finish::Finished => Ok(()),
        db::tus::Finish::AlreadyFinished => Err(ApiError::new(
            StatusCode::CONFLICT,
            "upload_finished",
            "this upload has been recorded already",
        )),
        // Terminated or expired meanwhile: it makes no media.
        db::tus::Finish::Gone => Err(ApiError::not_found("upload")),
    }
}

/// What recording an upload made.
enum Recorded {
    /// A media with its job.
    New(db::jobs::Job),
    /// A media sharing the files of one the tenant had (its answer, ready to send).
    Duplicate(Response),
}

/// An upload of bytes the tenant already has.
struct Duplicate {
    id: Uuid,
    bytes: i64,
    /// The live media with these bytes found under the content lock.
    source: db::media::Media,
    /// The new media's own metadata.
    metadata: serde_json::Value,
}

/// Records a duplicate upload in `tx` (which holds the content lock) and commits: a new media
/// sharing the source's files, ready at once if the source is (with its `media.ready` event),
/// else pending until the source's job finishes both. No job, no second copy.
async fn record_duplicate(
    state: &AppState,
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    uploader: &Uploader,
    duplicate: Duplicate,
    trace: Option<String>,
    mode: super::sign::UrlMode,
) -> Result<Response, ApiError> {
    let Duplicate {
        id,
        bytes,
        source,
        metadata,
    } = duplicate;
    let owner = db::media::content_owner(&mut *tx, source.id)
        .await?
        .unwrap_or(source.id);
    // The job that makes (or made) the shared files: the owner's, not a duplicate's (none).
    let owner_job = db::media::job_of(&mut *tx, owner).await?;
    db::media::insert_duplicate(&mut tx, id, &source, owner, bytes, uploader.key_id).await?;
    db::media::set_metadata(&mut *tx, id, &metadata).await?;
    let ready = source.status == "ready";
    let variants = if ready {
        db::media::variants(&mut *tx, id).await?
    } else {
        Vec::new()
    };
    let now = chrono::Utc::now();
    let media = db::media::Media {
        id,
        status: if ready { "ready" } else { "pending" }.to_owned(),
        bytes,
        error: None,
        job_id: None,
        api_key_id: Some(uploader.key_id),
        metadata,
        placeholder: source.placeholder.clone(),
        progress: None,
        created_at: now,
        updated_at: now,
        ..source.clone()
    };
    let view = MediaView::build(&media, &variants);
    let mut deliveries = Vec::new();
    if ready {
        let event = db::webhooks::Event {
            tenant: Some(&uploader.tenant),
            event_type: "media.ready",
            data: json!(view),
            traceparent: trace,
        };
        deliveries =
            db::webhooks::emit(&mut tx, &event, state.config.max_attempts(JobKind::Webhook))
                .await?;
    }
    tx.commit().await?;
    for delivery in &deliveries {
        kiln_core::queue::publish_committed(&state.writes, &state.publisher, delivery).await;
    }
    metrics::counter!("kiln_uploads_deduplicated_total").increment(1);
    tracing::info!(media.id = %id, duplicate_of = %source.id, ready, "duplicate upload shares stored files");
    // Committed: nothing below may fail, or the client's retry would make another media.
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let body = Accepted {
        media: view,
        job_id: owner_job,
        duplicate_of: Some(source.id),
    };
    let mut response = match serde_json::to_string(&body) {
        Ok(json) => {
            let signed = super::sign::sign_view(&json, &state.signer, mode, now.timestamp());
            let mut response = (status, signed).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(_) => (status, Json(body)).into_response(),
    };
    if let Ok(location) = HeaderValue::try_from(format!("/v1/media/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Counts the upload against the tenant's daily quotas, in the transaction that records it.
async fn take_upload_quota(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    tenant: &str,
    bytes: i64,
) -> Result<(), ApiError> {
    let limits = &state.config.limits;
    let taken = db::usage::take_upload(
        tx,
        tenant,
        bytes,
        limits.uploads_per_day,
        limits.upload_bytes_per_day,
    )
    .await?;
    if limits.upload_bytes_per_day > 0
        && u64::try_from(bytes).unwrap_or(0) > limits.upload_bytes_per_day
    {
        return Err(over_daily_bytes(limits.upload_bytes_per_day));
    }
    taken.map_err(|quota| match quota {
        db::usage::UploadQuota::Uploads => {
            crate::limits::quota_exceeded("uploads", limits.uploads_per_day)
        }
        db::usage::UploadQuota::Bytes => {
            crate::limits::quota_exceeded("upload_bytes", limits.upload_bytes_per_day)
        }
    })
}

/// The converted sizes recorded for the media and echoed in the answer.
struct NewMediaValues {
    bytes: i64,
    width: i32,
    height: i32,
}

/// The 202 body: the media as `GET /v1/media/{id}` shows it, plus the job processing it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Accepted {
    #[serde(flatten)]
    pub media: MediaView,
    /// The job that makes the variants (for a duplicate, the job of the media it shares them
    /// with; `null` if that job is gone).
    pub job_id: Option<Uuid>,
    /// Set when the tenant had these bytes already: the media whose stored files this one
    /// shares. Nothing was stored or queued again; the media is ready at once (200) if that
    /// one is, else it becomes ready with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duplicate_of: Option<Uuid>,
}

/// The 202 answer with its `Location`. Infallible: it is built after the commit.
fn accepted(media: MediaView, job_id: Option<Uuid>, duplicate_of: Option<Uuid>) -> Response {
    let location = format!("/v1/media/{}", media.id);
    let body = Accepted {
        media,
        job_id,
        duplicate_of,
    };
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    // A formatted UUID is always a valid header value; should that ever change, the answer
    // goes without a Location rather than turning an accepted upload into an error.
    if let Ok(location) = HeaderValue::try_from(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// 413: one upload larger than a whole day's byte quota.
pub fn over_daily_bytes(max_bytes: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the upload is larger than this tenant's daily upload_bytes quota ({max_bytes})"),
    )
}
