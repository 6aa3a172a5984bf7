//! `/v1/admin`: operators' actions, for keys with the `admin` scope. Admin keys see every
//! tenant.

pub mod backups;
pub mod jobs;
pub mod keys;
pub mod queues;
pub mod schedules;
pub mod webhooks;
