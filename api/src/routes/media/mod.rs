//! `/v1/media`: upload, read, download variants, and delete.

pub mod delete;
pub mod get;
mod pace;
pub mod upload;
pub mod variant;
pub mod view;
