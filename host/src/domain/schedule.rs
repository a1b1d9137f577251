//! A deployment's schedules: when its runs are due (cron in a time zone, a
//! fixed interval, or one time), and the plan of which times get a run —
//! ahead of time, and after downtime by the schedule's catch-up policy.
//! Pure: the materializer (`run/schedule.rs`) stores what the plan says.

use std::str::FromStr;

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ValidationError;

/// The longest interval a schedule may have: a leap year.
pub(crate) const MAX_INTERVAL_SECONDS: u64 = 366 * 24 * 3600;
/// A time missed by less than this is still created as on time (a pass that
/// wakes a little late, a slow store write); beyond it, it was missed and
/// the catch-up policy decides.
pub(crate) const ON_TIME_GRACE: Duration = Duration::seconds(2);
/// `catchup = all` creates at most this many missed times of one schedule
/// after one outage; older missed times are skipped, and the first run
/// created says so.
pub(crate) const MAX_CATCHUP_RUNS: usize = 1000;
/// How many missed times one plan walks before it jumps to the latest (a
/// 1 s schedule after a week away has 604,800).
const MAX_MISSED_WALK: usize = 10_000;

/// What happens to the times a schedule missed while no Weir was leading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Catchup {
    /// Missed times get no run (the default, as Prefect's `catchup=False`).
    #[default]
    None,
    /// The latest missed time gets a run; the ones before it do not.
    Latest,
    /// Every missed time gets a run (at most [`MAX_CATCHUP_RUNS`]).
    All,
}

impl Catchup {
    pub fn as_str(self) -> &'static str {
        match self {
            Catchup::None => "none",
            Catchup::Latest => "latest",
            Catchup::All => "all",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Catchup::None),
            "latest" => Some(Catchup::Latest),
            "all" => Some(Catchup::All),
            _ => None,
        }
    }
}

/// When a schedule's runs are due.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum When {
    /// Five cron fields (minute hour day-of-month month day-of-week) or a
    /// nickname (`@daily`), read in `timezone` (an IANA name).
    Cron { cron: String, timezone: String },
    /// Every `interval_seconds`, counted from `anchor`.
    Interval {
        interval_seconds: u64,
        anchor: DateTime<Utc>,
    },
    /// Once, at `at`.
    Once { at: DateTime<Utc> },
}

/// A compiled [`When`]: the times it names.
#[derive(Debug, Clone)]
pub(crate) enum Timetable {
    Cron(Box<Cron>, Tz),
    Interval { seconds: i64, anchor: DateTime<Utc> },
    Once(DateTime<Utc>),
}

impl When {
    /// Checks and compiles it; errors name the field.
    pub(crate) fn timetable(&self) -> Result<Timetable, ValidationError> {
        match self {
            When::Cron { cron, timezone } => {
                let tz = Tz::from_str(timezone).map_err(|_| {
                    ValidationError::new(
                        "timezone",
                        format!("{timezone:?} is not an IANA time zone (e.g. Europe/Paris, UTC)"),
                    )
                })?;
                let trimmed = cron.trim();
                let fields = trimmed.split_whitespace().count();
                if cron.len() > 256 {
                    return Err(ValidationError::new("cron", "at most 256 bytes"));
                }
                if !trimmed.starts_with('@') && fields != 5 {
                    return Err(ValidationError::new(
                        "cron",
                        format!(
                            "{cron:?} has {fields} field(s); a cron expression has five: \
                             minute hour day-of-month month day-of-week"
                        ),
                    ));
                }
                let parsed = CronParser::builder()
                    .seconds(Seconds::Disallowed)
                    .build()
                    .parse(trimmed)
                    .map_err(|e| ValidationError::new("cron", format!("{cron:?}: {e}")))?;
                let table = Timetable::Cron(Box::new(parsed), tz);
                // A pattern that names no real time (31 February) is refused
                // now rather than never firing.
                if table.next_after(Utc::now()).is_none() {
                    return Err(ValidationError::new(
                        "cron",
                        format!("{cron:?} names no time in the coming years"),
                    ));
                }
                Ok(table)
            }
            When::Interval {
                interval_seconds,
                anchor,
            } => {
                if !(1..=MAX_INTERVAL_SECONDS).contains(interval_seconds) {
                    return Err(ValidationError::new(
                        "interval",
                        format!("must be 1 second to 366 days, not {interval_seconds} s"),
                    ));
                }
                Ok(Timetable::Interval {
                    seconds: *interval_seconds as i64,
                    anchor: *anchor,
                })
            }
            When::Once { at } => Ok(Timetable::Once(*at)),
        }
    }
}

impl Timetable {
    /// The first time strictly after `after`.
    pub(crate) fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timetable::Cron(cron, tz) => cron
                .find_next_occurrence(&after.with_timezone(tz), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            Timetable::Interval { seconds, anchor } => {
                if after < *anchor {
                    return Some(*anchor);
                }
                let k = (after - *anchor).num_seconds() / seconds + 1;
                anchor.checked_add_signed(Duration::try_seconds(seconds.checked_mul(k)?)?)
            }
            Timetable::Once(at) => (*at > after).then_some(*at),
        }
    }

    /// The last time at or before `at`.
    fn last_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timetable::Cron(cron, tz) => cron
                .find_previous_occurrence(&at.with_timezone(tz), true)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            Timetable::Interval { seconds, anchor } => {
                if at < *anchor {
                    return None;
                }
                let k = (at - *anchor).num_seconds() / seconds;
                anchor.checked_add_signed(Duration::try_seconds(seconds.checked_mul(k)?)?)
            }
            Timetable::Once(t) => (*t <= at).then_some(*t),
        }
    }

    /// The latest `n` times in `(after, until]`, oldest first.
    fn latest(&self, until: DateTime<Utc>, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = self.last_at_or_before(until);
        while let Some(x) = t {
            if x <= after || out.len() == n {
                break;
            }
            out.push(x);
            t = self.last_at_or_before(x - Duration::nanoseconds(1));
        }
        out.reverse();
        out
    }

    /// The times in `(after, until]`, at most `max`.
    pub(crate) fn between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        max: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut cursor = after;
        while out.len() < max {
            match self.next_after(cursor) {
                Some(t) if t <= until => {
                    out.push(t);
                    cursor = t;
                }
                _ => break,
            }
        }
        out
    }
}

/// A schedule of a deployment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Schedule {
    pub deployment: String,
    pub name: String,
    #[serde(flatten)]
    pub when: When,
    /// Merged over the deployment's, as a run's own would be.
    pub parameters: Map<String, Value>,
    pub job_variables: Map<String, Value>,
    pub catchup: Catchup,
    pub paused: bool,
    /// Every time at or before this has been dealt with (its run created,
    /// or skipped by the catch-up policy).
    pub created_through: DateTime<Utc>,
    /// Stable across restarts; part of each run's idempotency key.
    pub id: String,
    /// Bumped on resume and on a change of its definition, so the times
    /// whose runs a pause cancelled can get new ones.
    pub generation: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A time that gets a run, and why (recorded in the run's history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) at: DateTime<Utc>,
    /// `None`: on time. `Some`: created, or preceded by skipped times, under
    /// the catch-up policy; the words go into the run's history.
    pub(crate) catchup: Option<String>,
}

/// What one pass does for a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Plan {
    /// The runs to create, oldest first.
    pub(crate) create: Vec<Slot>,
    /// Missed times that get no run.
    pub(crate) skipped: u64,
    /// The schedule's `created_through` once the plan is carried out (each
    /// created slot also advances it, so a pass cut short resumes there).
    pub(crate) through: DateTime<Utc>,
}

impl Schedule {
    /// The idempotency key of this schedule's run for `at`: the same time of
    /// the same schedule (and generation) names one run, whichever replica
    /// or restart creates it.
    pub(crate) fn run_key(&self, at: DateTime<Utc>) -> String {
        format!(
            "schedule/{}/{}/{}",
            self.id,
            self.generation,
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }

    /// The prefix every run key of this generation starts with.
    pub(crate) fn key_prefix(&self) -> String {
        format!("schedule/{}/{}/", self.id, self.generation)
    }

    /// Which times get a run now: the missed ones by the catch-up policy,
    /// then upcoming ones until `ahead` runs lie in the future or the next
    /// time is past `now + horizon`.
    pub(crate) fn plan(
        &self,
        table: &Timetable,
        now: DateTime<Utc>,
        horizon: Duration,
        ahead: usize,
    ) -> Plan {
        let mut plan = Plan {
            through: self.created_through,
            ..Plan::default()
        };
        if self.paused {
            return plan;
        }
        let before = now - ON_TIME_GRACE - Duration::nanoseconds(1);
        // Missed: not dealt with, and due before the grace.
        let walked = table.between(self.created_through, before, MAX_MISSED_WALK);
        let mut cursor = self.created_through;
        let mut note = None;
        if let Some(&last_walked) = walked.last() {
            let latest = table
                .last_at_or_before(before)
                .filter(|l| *l > last_walked)
                .unwrap_or(last_walked);
            let beyond = latest > last_walked;
            let total = if beyond {
                format!("more than {MAX_MISSED_WALK}")
            } else {
                walked.len().to_string()
            };
            let count = walked.len() as u64;
            match self.catchup {
                Catchup::None => {
                    plan.skipped = count;
                    // Said in the first on-time run's history.
                    note = Some(format!(
                        "catch-up none: {total} missed time(s) skipped, {} to {}",
                        walked[0].to_rfc3339(),
                        latest.to_rfc3339()
                    ));
                }
                Catchup::Latest => {
                    plan.skipped = count - 1;
                    plan.create.push(Slot {
                        at: latest,
                        catchup: Some(format!(
                            "catch-up latest: the latest of {total} missed time(s); \
                             the earlier ones get no run"
                        )),
                    });
                }
                Catchup::All => {
                    let keep = if beyond || walked.len() > MAX_CATCHUP_RUNS {
                        table.latest(before, self.created_through, MAX_CATCHUP_RUNS)
                    } else {
                        walked.clone()
                    };
                    let cut = keep.len() < walked.len() || beyond;
                    plan.skipped = count.saturating_sub(keep.len() as u64);
                    for (i, at) in keep.iter().enumerate() {
                        let words = if i == 0 && cut {
                            format!(
                                "catch-up all: {total} missed time(s); only the latest \
                                 {MAX_CATCHUP_RUNS} get a run, this is the oldest of them"
                            )
                        } else {
                            format!("catch-up all: one of {total} missed time(s)")
                        };
                        plan.create.push(Slot {
                            at: *at,
                            catchup: Some(words),
                        });
                    }
                }
            }
            cursor = latest;
        }
        plan.create
            .extend(self.upcoming(table, cursor, now, horizon, ahead, note));
        plan.through = plan
            .create
            .last()
            .map(|s| s.at)
            .unwrap_or(cursor)
            .max(cursor);
        plan
    }

    /// On-time and future times after `cursor`: up to `now + horizon`, and
    /// only while fewer than `ahead` of them lie in the future. The first
    /// carries `note`.
    fn upcoming(
        &self,
        table: &Timetable,
        cursor: DateTime<Utc>,
        now: DateTime<Utc>,
        horizon: Duration,
        ahead: usize,
        note: Option<String>,
    ) -> Vec<Slot> {
        // Runs already created for future times count against `ahead`.
        let already = if cursor > now {
            table.between(now, cursor, ahead).len()
        } else {
            0
        };
        let room = ahead.saturating_sub(already);
        let mut slots: Vec<Slot> = Vec::new();
        let mut c = cursor;
        let mut future = 0;
        while let Some(t) = table.next_after(c) {
            if t > now + horizon {
                break;
            }
            if t > now {
                if future == room {
                    break;
                }
                future += 1;
            }
            slots.push(Slot {
                at: t,
                catchup: None,
            });
            c = t;
            if slots.len() > MAX_CATCHUP_RUNS + ahead {
                break;
            }
        }
        if let (Some(first), Some(note)) = (slots.first_mut(), note) {
            first.catchup = Some(note);
        }
        slots
    }

    /// When this schedule next needs a pass: its next time enters the
    /// horizon, or a future run's time passes (freeing room under `ahead`).
    pub(crate) fn next_pass(
        &self,
        table: &Timetable,
        now: DateTime<Utc>,
        horizon: Duration,
    ) -> Option<DateTime<Utc>> {
        if self.paused {
            return None;
        }
        let enters = table.next_after(self.created_through).map(|t| t - horizon);
        let frees = table.next_after(now);
        match (enters, frees) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// An interval from the CLI and the config file: `90s`, `15m`, `2h`, `1d`,
/// or a number of seconds.
pub(crate) fn parse_interval(field: &str, text: &str) -> Result<u64, ValidationError> {
    let bad = || {
        ValidationError::new(
            field,
            format!("{text:?} is not an interval: a whole number with s, m, h or d (e.g. 30s, 1h)"),
        )
    };
    let text = text.trim();
    let last = text.chars().last().ok_or_else(bad)?;
    let (digits, unit) = if last.is_ascii_digit() {
        (text, 1)
    } else {
        let unit = match last {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        (&text[..text.len() - 1], unit)
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let seconds = n.checked_mul(unit).ok_or_else(bad)?;
    if !(1..=MAX_INTERVAL_SECONDS).contains(&seconds) {
        return Err(ValidationError::new(
            field,
            format!("must be 1 second to 366 days, not {text:?}"),
        ));
    }
    Ok(seconds)
}

/// A UTC instant at whole seconds (interval anchors and one-off times are
/// kept to the second, so their run keys are stable).
pub(crate) fn to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_opt(t.timestamp(), 0).single().unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test time")
            .with_timezone(&Utc)
    }

    fn cron(expr: &str, tz: &str) -> Timetable {
        When::Cron {
            cron: expr.into(),
            timezone: tz.into(),
        }
        .timetable()
        .expect("valid cron")
    }

    fn times(table: &Timetable, after: &str, until: &str) -> Vec<String> {
        table
            .between(utc(after), utc(until), 100)
            .iter()
            .map(|t| t.to_rfc3339())
            .collect()
    }

    fn schedule(when: When, catchup: Catchup, through: &str) -> Schedule {
        Schedule {
            deployment: "d".into(),
            name: "s".into(),
            when,
            parameters: Map::new(),
            job_variables: Map::new(),
            catchup,
            paused: false,
            created_through: utc(through),
            id: "id".into(),
            generation: 0,
            created_at: utc(through),
            updated_at: utc(through),
        }
    }

    // Europe/Paris: 2026-03-29 02:00 CET → 03:00 CEST (01:00 UTC);
    // 2026-10-25 03:00 CEST → 02:00 CET (01:00 UTC).
    #[test]
    fn a_daily_cron_in_paris_runs_once_a_day_across_both_changes() {
        let nightly = cron("0 2 * * *", "Europe/Paris");
        // Spring forward: 02:00 does not exist on the 29th; the run is at
        // the first instant after the gap, 03:00 CEST = 01:00 UTC.
        assert_eq!(
            times(&nightly, "2026-03-27T12:00:00Z", "2026-03-31T12:00:00Z"),
            [
                "2026-03-28T01:00:00+00:00", // 02:00 CET
                "2026-03-29T01:00:00+00:00", // gap: 03:00 CEST
                "2026-03-30T00:00:00+00:00", // 02:00 CEST
                "2026-03-31T00:00:00+00:00",
            ]
        );
        // Fall back: 02:00–02:59 happens twice on the 25th; a fixed-time job
        // runs once, at the first of them (02:00 CEST = 00:00 UTC).
        assert_eq!(
            times(&nightly, "2026-10-23T12:00:00Z", "2026-10-27T12:00:00Z"),
            [
                "2026-10-24T00:00:00+00:00", // 02:00 CEST
                "2026-10-25T00:00:00+00:00", // the first 02:00, CEST
                "2026-10-26T01:00:00+00:00", // 02:00 CET
                "2026-10-27T01:00:00+00:00",
            ]
        );
    }

    // America/New_York: 2026-03-08 02:00 EST → 03:00 EDT (07:00 UTC);
    // 2026-11-01 02:00 EDT → 01:00 EST (06:00 UTC).
    #[test]
    fn new_york_fixed_and_wildcard_jobs_across_both_changes() {
        let early = cron("30 2 * * *", "America/New_York");
        assert_eq!(
            times(&early, "2026-03-07T00:00:00Z", "2026-03-09T12:00:00Z"),
            [
                "2026-03-07T07:30:00+00:00", // 02:30 EST
                "2026-03-08T07:00:00+00:00", // gap: the first instant after, 03:00 EDT
                "2026-03-09T06:30:00+00:00", // 02:30 EDT
            ]
        );
        let once_at_one_thirty = cron("30 1 * * *", "America/New_York");
        assert_eq!(
            times(
                &once_at_one_thirty,
                "2026-10-31T00:00:00Z",
                "2026-11-02T12:00:00Z"
            ),
            [
                "2026-10-31T05:30:00+00:00", // 01:30 EDT
                "2026-11-01T05:30:00+00:00", // the first 01:30 (EDT) only
                "2026-11-02T06:30:00+00:00", // 01:30 EST
            ]
        );
        // A wildcard-hour job follows real time: every half hour, the
        // repeated hour included, none skipped or doubled.
        let half_hourly = cron("*/30 * * * *", "America/New_York");
        assert_eq!(
            times(&half_hourly, "2026-11-01T04:45:00Z", "2026-11-01T07:15:00Z"),
            [
                "2026-11-01T05:00:00+00:00", // 01:00 EDT
                "2026-11-01T05:30:00+00:00", // 01:30 EDT
                "2026-11-01T06:00:00+00:00", // 01:00 EST
                "2026-11-01T06:30:00+00:00", // 01:30 EST
                "2026-11-01T07:00:00+00:00", // 02:00 EST
            ]
        );
    }

    #[test]
    fn bad_schedules_name_the_field() {
        let err = |w: When| w.timetable().expect_err("refused").field;
        assert_eq!(
            err(When::Cron {
                cron: "0 0 2 * * *".into(),
                timezone: "UTC".into()
            }),
            "cron"
        );
        assert_eq!(
            err(When::Cron {
                cron: "61 * * * *".into(),
                timezone: "UTC".into()
            }),
            "cron"
        );
        assert_eq!(
            err(When::Cron {
                cron: "0 0 31 2 *".into(),
                timezone: "UTC".into()
            }),
            "cron"
        );
        assert_eq!(
            err(When::Cron {
                cron: "0 2 * * *".into(),
                timezone: "Europe/Atlantis".into()
            }),
            "timezone"
        );
        assert_eq!(
            err(When::Interval {
                interval_seconds: 0,
                anchor: Utc::now()
            }),
            "interval"
        );
        assert!(
            When::Cron {
                cron: "@daily".into(),
                timezone: "UTC".into()
            }
            .timetable()
            .is_ok()
        );
        assert_eq!(parse_interval("interval", "1s"), Ok(1));
        assert_eq!(parse_interval("interval", "90"), Ok(90));
        assert_eq!(parse_interval("interval", "2h"), Ok(7200));
        for bad in [
            "",
            "s",
            "1x",
            "-1s",
            "0s",
            "367d",
            "1.5h",
            "1ĥ",
            "99999999999999999999d",
        ] {
            assert_eq!(
                parse_interval("interval", bad).map_err(|e| e.field),
                Err("interval".to_owned()),
                "{bad:?}"
            );
        }
    }

    fn every_second(anchor: &str) -> When {
        When::Interval {
            interval_seconds: 1,
            anchor: utc(anchor),
        }
    }

    #[test]
    fn a_plan_creates_ahead_up_to_the_count_and_the_horizon() {
        let s = schedule(
            every_second("2026-01-01T00:00:00Z"),
            Catchup::None,
            "2026-01-01T00:00:00Z",
        );
        let table = s.when.timetable().expect("valid");
        let now = utc("2026-01-01T00:00:00.500Z");
        let plan = s.plan(&table, now, Duration::hours(1), 3);
        let at: Vec<_> = plan.create.iter().map(|s| s.at).collect();
        assert_eq!(
            at,
            [
                utc("2026-01-01T00:00:01Z"),
                utc("2026-01-01T00:00:02Z"),
                utc("2026-01-01T00:00:03Z")
            ]
        );
        assert_eq!(plan.through, utc("2026-01-01T00:00:03Z"));
        // Two of those still ahead a second later: room for one more.
        let s = Schedule {
            created_through: plan.through,
            ..s
        };
        let plan = s.plan(
            &table,
            utc("2026-01-01T00:00:01.200Z"),
            Duration::hours(1),
            3,
        );
        assert_eq!(
            plan.create.iter().map(|s| s.at).collect::<Vec<_>>(),
            [utc("2026-01-01T00:00:04Z")]
        );
        // The horizon bounds it too.
        let plan = s.plan(
            &table,
            utc("2026-01-01T00:00:01.200Z"),
            Duration::seconds(1),
            100,
        );
        assert!(plan.create.is_empty(), "{plan:?}");
        assert_eq!(
            s.next_pass(
                &table,
                utc("2026-01-01T00:00:01.200Z"),
                Duration::seconds(1)
            ),
            Some(utc("2026-01-01T00:00:02Z"))
        );
    }

    #[test]
    fn missed_times_follow_the_catchup_policy() {
        // Through 00:00:10; now 00:00:20.5: 00:00:11 … 00:00:18 are missed
        // (more than the 2 s grace), 19 and 20 are on time.
        let now = utc("2026-01-01T00:00:20.500Z");
        let plan_of = |catchup| {
            let s = schedule(
                every_second("2026-01-01T00:00:00Z"),
                catchup,
                "2026-01-01T00:00:10Z",
            );
            let table = s.when.timetable().expect("valid");
            s.plan(&table, now, Duration::hours(1), 2)
        };
        let secs = |p: &Plan| {
            p.create
                .iter()
                .map(|s| s.at.timestamp() - utc("2026-01-01T00:00:00Z").timestamp())
                .collect::<Vec<_>>()
        };
        let none = plan_of(Catchup::None);
        assert_eq!(secs(&none), [19, 20, 21, 22]);
        assert_eq!(none.skipped, 8);
        let note = none.create[0].catchup.as_deref().expect("noted");
        assert!(
            note.starts_with("catch-up none: 8 missed time(s) skipped"),
            "{note}"
        );
        assert!(none.create[1].catchup.is_none());

        let latest = plan_of(Catchup::Latest);
        assert_eq!(secs(&latest), [18, 19, 20, 21, 22]);
        assert_eq!(latest.skipped, 7);
        assert!(
            latest.create[0]
                .catchup
                .as_deref()
                .expect("noted")
                .starts_with("catch-up latest")
        );

        let all = plan_of(Catchup::All);
        assert_eq!(secs(&all), [11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22]);
        assert_eq!(all.skipped, 0);
        assert!(all.create[..8].iter().all(|s| s.catchup.is_some()));
        assert!(all.create[8..].iter().all(|s| s.catchup.is_none()));
        assert_eq!(all.through, utc("2026-01-01T00:00:22Z"));
    }

    #[test]
    fn a_long_outage_is_bounded() {
        // A week of a 1 s schedule missed.
        let now = utc("2026-01-08T00:00:00Z");
        for catchup in [Catchup::None, Catchup::Latest, Catchup::All] {
            let s = schedule(
                every_second("2026-01-01T00:00:00Z"),
                catchup,
                "2026-01-01T00:00:00Z",
            );
            let table = s.when.timetable().expect("valid");
            let plan = s.plan(&table, now, Duration::hours(1), 1);
            // At most the latest 1000 missed, three on time (within the grace,
            // and now), one ahead.
            assert!(plan.create.len() <= MAX_CATCHUP_RUNS + 4, "{catchup:?}");
            // Jumped to the latest missed time, whatever the policy.
            assert!(
                plan.through > now - Duration::seconds(5),
                "{catchup:?} {plan:?}"
            );
            let note = plan.create[0].catchup.as_deref().expect("noted");
            assert!(note.contains("more than 10000"), "{note}");
            if catchup == Catchup::All {
                // The latest 1000 missed, then the on-time ones.
                assert!(plan.create[MAX_CATCHUP_RUNS - 1].catchup.is_some());
                assert_eq!(
                    plan.create[MAX_CATCHUP_RUNS - 1].at,
                    utc("2026-01-07T23:59:57Z")
                );
                assert!(plan.create[MAX_CATCHUP_RUNS].catchup.is_none());
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// Whatever a caller sends as a cron expression or a time zone is
        /// refused or accepted, never a panic (the API would answer 500),
        /// and an accepted one names its next times.
        #[test]
        fn any_cron_text_is_accepted_or_refused(
            cron in "[0-9*/,LW#?@A-Za-z -]{0,40}",
            tz in proptest::sample::select(vec!["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"]),
        ) {
            let when = When::Cron { cron, timezone: tz.to_owned() };
            if let Ok(table) = when.timetable() {
                let now = Utc::now();
                let next = table.between(now, now + Duration::days(3660), 3);
                proptest::prop_assert!(!next.is_empty());
                proptest::prop_assert!(next.windows(2).all(|w| w[0] < w[1]));
            }
        }
    }

    #[test]
    fn a_one_off_time_runs_once_and_a_paused_schedule_plans_nothing() {
        let s = schedule(
            When::Once {
                at: utc("2026-01-01T00:01:00Z"),
            },
            Catchup::None,
            "2026-01-01T00:00:00Z",
        );
        let table = s.when.timetable().expect("valid");
        let plan = s.plan(&table, utc("2026-01-01T00:00:30Z"), Duration::hours(1), 10);
        assert_eq!(plan.create.len(), 1);
        let done = Schedule {
            created_through: plan.through,
            ..s.clone()
        };
        assert!(
            done.plan(&table, utc("2026-01-01T00:02:00Z"), Duration::hours(1), 10)
                .create
                .is_empty()
        );
        assert_eq!(
            done.next_pass(&table, utc("2026-01-01T00:02:00Z"), Duration::hours(1)),
            None
        );
        let paused = Schedule { paused: true, ..s };
        assert!(
            paused
                .plan(&table, utc("2026-01-01T00:00:30Z"), Duration::hours(1), 10)
                .create
                .is_empty()
        );
        assert_eq!(
            paused.run_key(utc("2026-01-01T00:01:00Z")),
            "schedule/id/0/2026-01-01T00:01:00Z"
        );
    }
}
