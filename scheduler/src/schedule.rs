//! The cron table: `name|cron expression|job kind` entries separated by `;`. Expressions have
//! six fields, seconds first, and run in UTC, e.g.
//! `nightly-backup|0 0 3 * * *|backup;hourly-cleanup|0 0 * * * *|cleanup`.

use chrono::{DateTime, Utc};
use croner::{Cron, parser::CronParser, parser::Seconds};
use kiln_core::jobs::JobKind;

/// The schedules used when `KILN_SCHEDULES` is unset.
pub const DEFAULT_SCHEDULES: &str =
    "nightly-backup|0 0 3 * * *|backup;hourly-cleanup|0 0 * * * *|cleanup";

/// One entry of the cron table.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub cron: String,
    pub kind: JobKind,
    parsed: Cron,
}

impl Schedule {
    /// The tick that fired at about `now`: the latest scheduled time at or before `now` plus a
    /// little slack, so a callback that runs a few milliseconds early or late still names the
    /// same tick on every scheduler — which is what makes the dedupe key agree.
    pub fn tick_at(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        use chrono::Timelike;
        let probe = (now + chrono::Duration::milliseconds(500)).with_nanosecond(0)?;
        self.parsed.find_previous_occurrence(&probe, true).ok()
    }

    /// The next scheduled time after `now`.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.parsed.find_next_occurrence(&now, false).ok()
    }

    /// The idempotency key of one tick: `<schedule>@<tick time>`.
    pub fn dedupe_key(&self, tick: DateTime<Utc>) -> String {
        format!("{}@{}", self.name, tick.format("%Y-%m-%dT%H:%M:%SZ"))
    }
}

fn parse_cron(expression: &str) -> Option<Cron> {
    CronParser::builder()
        .seconds(Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expression)
        .ok()
}

/// A cron table entry that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid KILN_SCHEDULES entry {entry:?}: {reason}")]
pub struct ScheduleError {
    entry: String,
    reason: String,
}

/// Parses the table (empty means the defaults), checking every cron expression.
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
        let parsed = parse_cron(cron).ok_or_else(|| error("not a valid cron expression"))?;
        table.push(Schedule {
            name: name.to_owned(),
            cron: cron.to_owned(),
            kind,
            parsed,
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
    fn a_tick_is_named_the_same_slightly_before_and_after_it() {
        let table = parse("s|*/10 * * * * *|cleanup").expect("valid");
        let tick: DateTime<Utc> = "2026-01-01T00:00:10Z".parse().expect("time");
        for offset_ms in [-300, 0, 5, 400] {
            let now = tick + chrono::Duration::milliseconds(offset_ms);
            assert_eq!(table[0].tick_at(now), Some(tick), "offset {offset_ms} ms");
        }
        assert_eq!(table[0].dedupe_key(tick), "s@2026-01-01T00:00:10Z");
    }

    #[test]
    fn bad_entries_are_refused_with_the_entry_named() {
        let err = parse("x|* * *|backup").expect_err("too few fields");
        assert!(err.to_string().contains("x|* * *|backup"), "{err}");
        assert!(parse("x|0 0 * * * *|nope").is_err());
        assert!(parse("x|0 0 99 * * *|backup").is_err());
        assert!(parse("x|0 0 * * * *|backup;x|0 0 * * * *|cleanup").is_err());
    }
}
