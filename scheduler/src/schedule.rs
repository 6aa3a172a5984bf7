//! The cron table, from `KILN_SCHEDULES`: either inline entries
//! `name|cron|kind[|missed policy[|payload JSON]]` separated by `;`, or the path of a TOML file
//! with one `[[schedule]]` table per entry (`name`, `cron`, `kind`, `missed`, `payload`).
//! Expressions have six fields, seconds first, and run in UTC, e.g.
//! `nightly-backup|0 0 3 * * *|backup|once;hourly-cleanup|0 0 * * * *|cleanup`.

use chrono::{DateTime, Utc};
use croner::{Cron, parser::CronParser, parser::Seconds};
use kiln_core::jobs::JobKind;
use serde::Deserialize;

/// The schedules used when `KILN_SCHEDULES` is unset: a missed nightly backup is made up at
/// start-up; a missed cleanup or digest simply waits for its next tick.
pub const DEFAULT_SCHEDULES: &str = "nightly-backup|0 0 3 * * *|backup|once;\
     hourly-cleanup|0 0 * * * *|cleanup|skip;\
     daily-digest|0 0 8 * * *|digest|skip;\
     minutely-prune|0 * * * * *|prune|skip";

/// What to do, at start-up, about ticks that passed while no scheduler ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedPolicy {
    /// Count them, fire none.
    Skip,
    /// Count them and fire the latest one, once.
    Once,
}

impl MissedPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Once => "once",
        }
    }
}

impl std::str::FromStr for MissedPolicy {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "skip" => Ok(Self::Skip),
            "once" => Ok(Self::Once),
            _ => Err(()),
        }
    }
}

/// One entry of the cron table.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub cron: String,
    pub kind: JobKind,
    pub missed: MissedPolicy,
    /// Merged into each job's payload (next to `schedule` and `tick`).
    pub payload: serde_json::Map<String, serde_json::Value>,
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

    /// The ticks after `since` up to and including `until`, counted up to `cap`, and the latest
    /// of them.
    pub fn ticks_between(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        cap: u64,
    ) -> (u64, Option<DateTime<Utc>>) {
        let (mut count, mut latest) = (0, None);
        let mut cursor = since;
        while count < cap {
            match self.next_after(cursor) {
                Some(tick) if tick <= until => {
                    count += 1;
                    latest = Some(tick);
                    cursor = tick;
                }
                _ => break,
            }
        }
        if count == cap {
            // Too many to walk (a per-second schedule down for days): the latest one still
            // matters for `once`.
            latest = self.tick_at(until).filter(|t| *t > since).or(latest);
        }
        (count, latest)
    }

    /// The ticks after `since` up to and including `until`, oldest first, at most `cap` (the
    /// latest ones when there are more).
    pub fn ticks_after(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        cap: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut ticks = std::collections::VecDeque::new();
        let mut cursor = since;
        while let Some(tick) = self.next_after(cursor).filter(|t| *t <= until) {
            if ticks.len() == cap {
                ticks.pop_front();
            }
            ticks.push_back(tick);
            cursor = tick;
        }
        ticks.into()
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

/// A cron table that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid KILN_SCHEDULES entry {entry:?}: {reason}")]
pub struct ScheduleError {
    entry: String,
    reason: String,
}

/// One entry as written, before it is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    cron: String,
    kind: String,
    #[serde(default)]
    missed: Option<String>,
    #[serde(default)]
    payload: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    #[serde(default)]
    schedule: Vec<RawEntry>,
}

/// Reads the table named by `KILN_SCHEDULES`: inline entries (they contain `|`), the path of a
/// TOML file, or nothing for the defaults.
pub fn load(raw: &str) -> Result<Vec<Schedule>, ScheduleError> {
    let raw = raw.trim();
    if raw.is_empty() || raw.contains('|') {
        return parse(raw);
    }
    let error = |reason: String| ScheduleError {
        entry: raw.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(raw).map_err(|e| error(format!("cannot read: {e}")))?;
    let file: TableFile = toml::from_str(&text).map_err(|e| error(e.to_string()))?;
    check(file.schedule)
}

/// Parses inline entries (empty means the defaults), checking every cron expression.
pub fn parse(raw: &str) -> Result<Vec<Schedule>, ScheduleError> {
    let raw = if raw.trim().is_empty() {
        DEFAULT_SCHEDULES
    } else {
        raw
    };
    let mut entries = Vec::new();
    for entry in raw.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let error = |reason: &str| ScheduleError {
            entry: entry.to_owned(),
            reason: reason.to_owned(),
        };
        // The payload is last and may itself contain `|`.
        let parts: Vec<&str> = entry.splitn(5, '|').map(str::trim).collect();
        let (name, cron, kind) = match parts[..] {
            [name, cron, kind, ..] => (name, cron, kind),
            _ => return Err(error("expected name|cron|kind[|missed[|payload]]")),
        };
        let payload = match parts.get(4) {
            Some(json) => Some(
                serde_json::from_str(json)
                    .map_err(|_| error("the payload must be a JSON object"))?,
            ),
            None => None,
        };
        entries.push(RawEntry {
            name: name.to_owned(),
            cron: cron.to_owned(),
            kind: kind.to_owned(),
            missed: parts.get(3).map(|m| (*m).to_owned()),
            payload,
        });
    }
    check(entries)
}

fn check(entries: Vec<RawEntry>) -> Result<Vec<Schedule>, ScheduleError> {
    let mut table: Vec<Schedule> = Vec::new();
    for entry in entries {
        let error = |reason: &str| ScheduleError {
            entry: format!("{}|{}|{}", entry.name, entry.cron, entry.kind),
            reason: reason.to_owned(),
        };
        let name = entry.name.trim();
        if name.is_empty() || table.iter().any(|s| s.name == name) {
            return Err(error("names must be present and unique"));
        }
        if name.contains('@') || name.chars().any(char::is_whitespace) {
            return Err(error("names may not contain '@' or spaces"));
        }
        if entry.cron.split_whitespace().count() != 6 {
            return Err(error(
                "cron needs six fields: sec min hour day month weekday",
            ));
        }
        let kind = entry.kind.parse().map_err(|_| error("unknown job kind"))?;
        let missed = match entry.missed.as_deref().map(str::trim) {
            None | Some("") => MissedPolicy::Skip,
            Some(policy) => policy
                .parse()
                .map_err(|()| error("missed policy must be skip or once"))?,
        };
        let parsed = parse_cron(&entry.cron).ok_or_else(|| error("not a valid cron expression"))?;
        let payload = entry.payload.unwrap_or_default();
        if kiln_core::jobs::find_nul(&serde_json::Value::Object(payload.clone()), "payload")
            .is_some()
        {
            return Err(error("the payload must not contain NUL characters"));
        }
        table.push(Schedule {
            name: name.to_owned(),
            cron: entry.cron.trim().to_owned(),
            kind,
            missed,
            payload,
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
        let kinds: Vec<_> = table.iter().map(|s| s.kind).collect();
        let want = [
            JobKind::Backup,
            JobKind::Cleanup,
            JobKind::Digest,
            JobKind::Prune,
        ];
        assert_eq!(kinds, want);
        assert_eq!(table[0].missed, MissedPolicy::Once);
        assert_eq!(table[1].missed, MissedPolicy::Skip);
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
    fn missed_ticks_are_counted_with_the_latest_named() {
        let table = parse("s|0 * * * * *|cleanup|once").expect("valid");
        let since: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().expect("time");
        let until: DateTime<Utc> = "2026-01-01T00:05:30Z".parse().expect("time");
        let (count, latest) = table[0].ticks_between(since, until, 1000);
        assert_eq!(count, 5);
        assert_eq!(latest, "2026-01-01T00:05:00Z".parse().ok());
        let (capped, latest) = table[0].ticks_between(since, until, 2);
        assert_eq!(capped, 2);
        assert_eq!(latest, "2026-01-01T00:05:00Z".parse().ok());
    }

    #[test]
    fn ticks_after_lists_the_skipped_ticks_oldest_first_and_caps_them() {
        let table = parse("s|* * * * * *|cleanup").expect("valid");
        let t0: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().expect("time");
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        assert_eq!(
            table[0].ticks_after(at(0), at(3), 10),
            [at(1), at(2), at(3)]
        );
        assert_eq!(table[0].ticks_after(at(0), at(3), 2), [at(2), at(3)]);
        assert!(table[0].ticks_after(at(3), at(3), 10).is_empty());
    }

    #[test]
    fn a_payload_with_a_nul_is_refused() {
        let error = parse("n|0 * * * * *|cleanup|skip|{\"x\": \"a\\u0000\"}").expect_err("nul");
        assert!(error.to_string().contains("NUL"), "{error}");
    }

    #[test]
    fn policy_and_payload_are_optional_fields() {
        let table =
            parse(r#"d|0 0 8 * * *|digest|once|{"hours": 24, "note": "a|b"}"#).expect("valid");
        assert_eq!(table[0].missed, MissedPolicy::Once);
        assert_eq!(table[0].payload["hours"], 24);
        assert_eq!(table[0].payload["note"], "a|b");
    }

    #[test]
    fn a_toml_file_is_read_when_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("schedules.toml");
        std::fs::write(
            &path,
            "[[schedule]]\nname = \"b\"\ncron = \"0 0 3 * * *\"\nkind = \"backup\"\n\
             missed = \"once\"\n\n[[schedule]]\nname = \"c\"\ncron = \"0 */5 * * * *\"\n\
             kind = \"cleanup\"\npayload = { media_id = \"x\" }\n",
        )
        .expect("write");
        let table = load(&path.display().to_string()).expect("valid file");
        assert_eq!(table.len(), 2);
        assert_eq!(table[0].missed, MissedPolicy::Once);
        assert_eq!(table[1].payload["media_id"], "x");
        let missing = load("/nonexistent/schedules.toml").expect_err("no file");
        assert!(missing.to_string().contains("cannot read"), "{missing}");
    }

    #[test]
    fn bad_entries_are_refused_with_the_entry_named() {
        let err = parse("x|* * *|backup").expect_err("too few fields");
        assert!(err.to_string().contains("x|* * *|backup"), "{err}");
        assert!(parse("x|0 0 * * * *|nope").is_err());
        assert!(parse("x|0 0 99 * * *|backup").is_err());
        assert!(parse("x|0 0 * * * *|backup;x|0 0 * * * *|cleanup").is_err());
        assert!(parse("x|0 0 * * * *|backup|sometimes").is_err());
        assert!(parse("x|0 0 * * * *|backup|once|[1]").is_err());
    }
}
