//! The minimum pace of an upload. A total deadline would cut off a slow phone sending a large
//! video; a per-read timeout lets a client send one byte every 29 s for ever, holding a
//! connection, a staging file and buffers. So the upload is judged over consecutive windows
//! (`KILN_UPLOAD_RATE_WINDOW_SECS`): each must bring at least `KILN_UPLOAD_MIN_BYTES_PER_SEC`
//! times its length, or the upload ends with 408 `upload_timeout`.

use std::{future::Future, pin::pin, time::Duration};

use axum::http::StatusCode;
use tokio::time::Instant;

use crate::error::ApiError;

pub struct Pace {
    window: Duration,
    /// Bytes each window must bring; 0 when the check is off.
    min_bytes: u64,
    started: Instant,
    received: u64,
    /// When the last read returned: the time until the next one is the server's (storage
    /// writes), not the client's, and does not count against the window.
    returned_at: Option<Instant>,
}

impl Pace {
    pub fn new(limits: &kiln_core::config::Limits) -> Self {
        let window = limits.upload_rate_window;
        Self {
            window,
            min_bytes: limits
                .upload_min_bytes_per_sec
                .saturating_mul(window.as_secs()),
            started: Instant::now(),
            received: 0,
            returned_at: None,
        }
    }

    /// Awaits one read of the body, ending the upload when the window it falls in closes short.
    pub async fn read<T>(&mut self, read: impl Future<Output = T>) -> Result<T, ApiError> {
        if self.min_bytes == 0 {
            return Ok(read.await);
        }
        if let Some(returned_at) = self.returned_at.take() {
            self.started += returned_at.elapsed();
        }
        let mut read = pin!(read);
        loop {
            let window_end = self.started + self.window;
            match tokio::time::timeout_at(window_end, &mut read).await {
                Ok(value) => {
                    self.returned_at = Some(Instant::now());
                    return Ok(value);
                }
                Err(_) => self.close_window(Instant::now())?,
            }
        }
    }

    /// Counts bytes received; a window that ended meanwhile is judged with them.
    pub fn count(&mut self, bytes: usize) -> Result<(), ApiError> {
        self.received += bytes as u64;
        // Judged as of the read's return, not after whatever the server did since.
        let at = self.returned_at.unwrap_or_else(Instant::now);
        if self.min_bytes > 0 && at >= self.started + self.window {
            self.close_window(at)?;
        }
        Ok(())
    }

    fn close_window(&mut self, at: Instant) -> Result<(), ApiError> {
        if self.received < self.min_bytes {
            metrics::counter!("kiln_upload_timeouts_total").increment(1);
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "upload_timeout",
                format!(
                    "the upload brought {} bytes in {} s; at least {} bytes/s are needed \
                     (KILN_UPLOAD_MIN_BYTES_PER_SEC)",
                    self.received,
                    self.window.as_secs(),
                    self.min_bytes / self.window.as_secs().max(1),
                ),
            ));
        }
        self.started = at;
        self.received = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(bytes_per_sec: u64, window_secs: u64) -> Pace {
        let mut limits = kiln_core::Config::from_lookup(|_| None)
            .expect("defaults")
            .limits;
        limits.upload_min_bytes_per_sec = bytes_per_sec;
        limits.upload_rate_window = Duration::from_secs(window_secs);
        Pace::new(&limits)
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_fails_when_its_window_closes() {
        let mut pace = pace(100, 10);
        // One byte, then nothing: the read is cut off at the window's end.
        pace.count(1).expect("within the window");
        let never = std::future::pending::<()>();
        let error = pace.read(never).await.expect_err("too slow");
        assert_eq!(error.code(), "upload_timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_but_steady_upload_goes_on_past_many_windows() {
        let mut pace = pace(100, 10);
        for _ in 0..100 {
            let chunk = pace
                .read(async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    600usize
                })
                .await
                .expect("fast enough");
            pace.count(chunk).expect("fast enough");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn time_the_server_spends_between_reads_is_not_the_client_s() {
        let mut pace = pace(100, 10);
        for _ in 0..3 {
            let chunk = pace.read(async { 1_500usize }).await.expect("at once");
            // A slow storage write: far longer than the window.
            tokio::time::sleep(Duration::from_secs(60)).await;
            pace.count(chunk).expect("the client was not slow");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn zero_turns_the_check_off() {
        let mut pace = pace(0, 10);
        let slow = pace.read(tokio::time::sleep(Duration::from_secs(3_600)));
        slow.await.expect("no pace is enforced");
    }
}
