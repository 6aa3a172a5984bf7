//! Video: which renditions a clip gets (`ladder`) and the `ffmpeg` CLI that makes them
//! (`ffmpeg`), run as a child process with a time limit and killed with its job.

pub mod ffmpeg;
pub mod ladder;
