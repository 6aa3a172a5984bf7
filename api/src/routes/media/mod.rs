//! `/v1/media`: upload, read, download variants, and delete.

pub mod delete;
pub mod get;
mod inspect;
pub mod list;
pub(crate) mod metadata;
mod negotiate;
pub(crate) mod pace;
pub mod patch;
mod ranges;
pub mod record;
pub mod settings;
pub mod sign;
pub mod upload;
pub mod variant;
pub mod view;
