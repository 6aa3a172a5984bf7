//! `/v1/emails`: enqueue an email for the worker to send.

pub mod send;
mod validate;
