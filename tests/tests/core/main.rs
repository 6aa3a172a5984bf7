//! kiln-core's building blocks against the real services they wrap.

mod cache;
mod job_rows;
mod job_writes;
mod rescue;
mod retention;
mod support;
