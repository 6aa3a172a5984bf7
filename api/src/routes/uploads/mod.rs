//! Uploads straight from a browser: `POST /v1/upload-tokens` (the app's backend asks for a
//! token good for one upload) and resumable tus 1.0 uploads at `/v1/uploads/tus/`.

pub mod tokens;
pub mod tus;
mod tus_auth;
mod tus_finish;
