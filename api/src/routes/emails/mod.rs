//! `/v1/emails`: enqueue an email for the worker to send.

pub mod send;
mod validate;

/// The largest request body `POST /v1/emails` reads. The limits are on the decoded text (1 MiB
/// of text and 1 MiB of HTML, see `validate`), and JSON may spell a character as a `\u` escape
/// of up to three times its UTF-8 size (two escapes for a four-byte character), so a request
/// at the documented maxima always fits; anything larger is 413, never a truncated read.
pub const BODY_LIMIT: usize = 2 * 3 * validate::MAX_BODY + 1024 * 1024;
