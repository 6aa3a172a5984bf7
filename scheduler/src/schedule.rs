//! The cron table: `name|cron expression|job kind` entries separated by `;`. Expressions have
//! six fields, seconds first, and run in UTC, e.g.
//! `nightly-backup|0 0 3 * * *|backup;hourly-cleanup|0 0 * * * *|cleanup`.

use kiln_core::jobs::JobKind;

/// The schedules used when `KILN_SCHEDULES` is unset.
pub const DEFAULT_SCHEDULES: &str =
    "nightly-backup|0 0 3 * * *|backup;hourly-cleanup|0 0 * * * *|cleanup";

/// One entry of the cron table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub name: String,
    pub cron: String,
    pub kind: JobKind,
}

/// A cron table entry that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid KILN_SCHEDULES entry {entry:?}: {reason}")]
pub struct ScheduleError {
    entry: String,
    reason: String,
}

/// Parses the table (empty means the defaults); cron syntax is checked by the scheduler later.
pub fn parse(raw: &str) -> Result<Vec<Schedule>, ScheduleError> {
    let raw = if raw.trim().is_empty() {
        DEFAULT_SCHEDULES
    } else {
        raw
    };
    let mut table = Vec::new();
    for entry in raw.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let error = |reason: &str| ScheduleError {
            entry: entry.to_owned(),
            reason: reason.to_owned(),
        };
        let parts: Vec<&str> = entry.split('|').map(str::trim).collect();
        let [name, cron, kind] = parts[..] else {
            return Err(error("expected name|cron|kind"));
        };
        if name.is_empty() || table.iter().any(|s: &Schedule| s.name == name) {
            return Err(error("names must be present and unique"));
        }
        if cron.split_whitespace().count() != 6 {
            return Err(error(
                "cron needs six fields: sec min hour day month weekday",
            ));
        }
        let kind = kind.parse().map_err(|_| error("unknown job kind"))?;
        table.push(Schedule {
            name: name.to_owned(),
            cron: cron.to_owned(),
            kind,
        });
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_table_means_the_defaults() {
        let table = parse("").expect("defaults parse");
        assert_eq!(table.len(), 2);
        assert_eq!(table[0].kind, JobKind::Backup);
    }

    #[test]
    fn bad_entries_are_refused_with_the_entry_named() {
        let err = parse("x|* * *|backup").expect_err("too few fields");
        assert!(err.to_string().contains("x|* * *|backup"), "{err}");
        assert!(parse("x|0 0 * * * *|nope").is_err());
        assert!(parse("x|0 0 * * * *|backup;x|0 0 * * * *|cleanup").is_err());
    }
}
