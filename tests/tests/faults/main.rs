//! Fault tests: each stops a private instance of a service mid-run (never the shared ones) and
//! checks the documented outcome, printing what was sent, finished, lost and duplicated.

mod postgres;
mod rabbitmq;
mod redis;
