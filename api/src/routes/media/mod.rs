//! `/v1/media`: upload, read, and download variants.

pub mod get;
pub mod upload;
pub mod variant;
pub mod view;
