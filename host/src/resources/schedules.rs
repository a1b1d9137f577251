//! A deployment's schedules: added, listed, paused, resumed and removed.
//! Their runs are created by `run/schedule.rs`; pausing or removing one
//! cancels its runs that have not been released yet.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use tracing::warn;
use uuid::Uuid;

use super::specs::validate_description;
use crate::dispatcher::{Dispatcher, Result};
use crate::domain::schedule::{parse_interval, to_second};
use crate::domain::{
    Catchup, Cause, Schedule, ValidationError, When, document, validate_dns_label,
};
use crate::pipeline;
use crate::store::StoreError;

/// Most schedules one deployment may have.
const MAX_SCHEDULES: usize = 100;

/// An interval as a number of seconds or as text (`90s`, `15m`, `2h`, `1d`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum IntervalValue {
    Seconds(u64),
    Text(String),
}

/// A schedule as the API, the CLI and the config file give it: exactly one
/// of `cron`, `interval` and `at`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub name: String,
    /// Five cron fields or a nickname (`@daily`).
    #[serde(default)]
    pub cron: Option<String>,
    /// The IANA time zone `cron` is read in (default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Every so often: seconds, or `30s`, `15m`, `2h`, `1d`.
    #[serde(default)]
    pub interval: Option<IntervalValue>,
    /// When an interval's times are counted from (default: when it is added,
    /// to the second).
    #[serde(default)]
    pub anchor: Option<DateTime<Utc>>,
    /// Once, at this time (in the future).
    #[serde(default)]
    pub at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub parameters: Map<String, Value>,
    #[serde(default)]
    pub job_variables: Map<String, Value>,
    /// `none` (default), `latest` or `all`.
    #[serde(default)]
    pub catchup: Catchup,
    /// Absent: not paused when added; left as it is when the config file
    /// applies it again.
    #[serde(default)]
    pub paused: Option<bool>,
    /// Free-form, not stored (accepted so a config file can say why).
    #[serde(default)]
    pub description: String,
}

impl ScheduleSpec {
    /// The definition it gives, checked; errors name the field.
    fn when(&self, now: DateTime<Utc>) -> Result<When, ValidationError> {
        let given = [
            self.cron.is_some(),
            self.interval.is_some(),
            self.at.is_some(),
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            return Err(ValidationError::new(
                "cron",
                "give exactly one of cron, interval and at",
            ));
        }
        if self.timezone.is_some() && self.cron.is_none() {
            return Err(ValidationError::new(
                "timezone",
                "a time zone applies to a cron schedule only (interval and at are instants)",
            ));
        }
        if self.anchor.is_some() && self.interval.is_none() {
            return Err(ValidationError::new(
                "anchor",
                "an anchor applies to an interval schedule only",
            ));
        }
        let when = match (&self.cron, &self.interval, self.at) {
            (Some(cron), _, _) => When::Cron {
                cron: cron.trim().to_owned(),
                timezone: self.timezone.clone().unwrap_or_else(|| "UTC".into()),
            },
            (_, Some(interval), _) => When::Interval {
                interval_seconds: match interval {
                    IntervalValue::Seconds(s) => *s,
                    IntervalValue::Text(t) => parse_interval("interval", t)?,
                },
                anchor: to_second(self.anchor.unwrap_or(now)),
            },
            (_, _, Some(at)) => {
                if at <= now {
                    return Err(ValidationError::new(
                        "at",
                        format!(
                            "{} has passed; a one-off time must be in the future",
                            at.to_rfc3339()
                        ),
                    ));
                }
                When::Once { at: to_second(at) }
            }
            (None, None, None) => {
                return Err(ValidationError::new(
                    "cron",
                    "give exactly one of cron, interval and at",
                ));
            }
        };
        when.timetable()?;
        Ok(when)
    }
}

/// A schedule spec's own fields, before its definition and job are checked.
fn check_schedule(spec: &ScheduleSpec) -> Result<(), ValidationError> {
    validate_dns_label("name", &spec.name)?;
    validate_description("description", &spec.description)?;
    document::check_map_depth("parameters", &spec.parameters)?;
    document::check_map_depth("job_variables", &spec.job_variables)?;
    Ok(())
}

impl Dispatcher {
    /// Adds a schedule to a deployment. Its first run is for its first time
    /// after now (times before it are not caught up).
    pub async fn create_schedule(&self, deployment: &str, spec: ScheduleSpec) -> Result<Schedule> {
        let now = Utc::now();
        let d = match self.store.get_deployment(deployment).await {
            Err(StoreError::NotFound { .. }) => {
                return Err(StoreError::not_found("deployment", deployment).into());
            }
            other => other?,
        };
        check_schedule(&spec)?;
        let when = spec.when(now)?;
        self.check_schedule_job(&d, &spec.job_variables).await?;
        if self.store.list_schedules(Some(deployment)).await?.len() >= MAX_SCHEDULES {
            return Err(ValidationError::new(
                "name",
                format!(
                    "deployment {deployment:?} has {MAX_SCHEDULES} schedules, the most it may have"
                ),
            )
            .into());
        }
        let schedule = Schedule {
            deployment: d.name,
            name: spec.name,
            when,
            parameters: spec.parameters,
            job_variables: spec.job_variables,
            catchup: spec.catchup,
            paused: spec.paused.unwrap_or(false),
            created_through: to_second(now),
            id: Uuid::now_v7().to_string(),
            generation: 0,
            created_at: now,
            updated_at: now,
        };
        self.store.create_schedule(&schedule).await?;
        self.wake_schedules();
        Ok(schedule)
    }

    /// The schedule's job variables over the deployment's must make a job,
    /// checked now as a run's are at submit.
    async fn check_schedule_job(
        &self,
        d: &crate::domain::Deployment,
        job_variables: &Map<String, Value>,
    ) -> Result<()> {
        let merged = pipeline::merged_job_variables(Some(&d.job_variables), job_variables);
        self.check_deployment(&d.pool, d.queue.as_deref(), &merged)
            .await
            .map(|_| ())
            .map_err(|e| match e {
                crate::dispatcher::DispatchError::Invalid(v) => {
                    ValidationError::new("job_variables", format!("{}: {}", v.field, v.reason))
                        .into()
                }
                other => other,
            })
    }

    pub async fn list_schedules(&self, deployment: Option<&str>) -> Result<Vec<Schedule>> {
        Ok(self.store.list_schedules(deployment).await?)
    }

    pub async fn get_schedule(&self, deployment: &str, name: &str) -> Result<Schedule> {
        Ok(self.store.get_schedule(deployment, name).await?)
    }

    /// Pauses (its runs not yet released are cancelled, and no more are
    /// created) or resumes (runs are created again from its next time after
    /// now; the paused times are not caught up).
    pub async fn set_schedule_paused(
        &self,
        deployment: &str,
        name: &str,
        paused: bool,
    ) -> Result<Schedule> {
        let mut s = self.store.get_schedule(deployment, name).await?;
        if s.paused == paused {
            return Ok(s);
        }
        let now = Utc::now();
        s.updated_at = now;
        let old = s.clone();
        if paused {
            s.paused = true;
            self.store.replace_schedule(&s).await?;
            self.cancel_schedule_runs(&old, "paused").await?;
        } else {
            s.paused = false;
            s.generation = s.generation.saturating_add(1);
            s.created_through = s.created_through.max(to_second(now));
            self.store.replace_schedule(&s).await?;
            self.wake_schedules();
        }
        Ok(s)
    }

    /// Deletes a deployment and its schedules; the schedules' runs not yet
    /// released are cancelled (they could not be built without it).
    pub async fn delete_deployment(&self, name: &str) -> Result<()> {
        let schedules = self.store.list_schedules(Some(name)).await?;
        self.store.delete_deployment(name).await?;
        for s in &schedules {
            self.cancel_schedule_runs(s, "removed with its deployment")
                .await?;
        }
        Ok(())
    }

    /// Removes a schedule; its runs not yet released are cancelled.
    pub async fn delete_schedule(&self, deployment: &str, name: &str) -> Result<()> {
        let s = self.store.get_schedule(deployment, name).await?;
        self.store.delete_schedule(deployment, name).await?;
        self.cancel_schedule_runs(&s, "removed").await
    }

    /// The config file's schedule: created when missing; replaced when its
    /// definition differs (its waiting runs cancelled, new times from now);
    /// left alone, progress and all, when it is the same. `paused` is applied
    /// only when the file gives it.
    pub(crate) async fn apply_schedule(
        &self,
        deployment: &str,
        spec: ScheduleSpec,
    ) -> Result<Schedule> {
        let paused = spec.paused;
        let existing = match self.store.get_schedule(deployment, &spec.name).await {
            Err(StoreError::NotFound { .. }) => {
                return self.create_schedule(deployment, spec).await;
            }
            other => other?,
        };
        let now = Utc::now();
        let d = self.store.get_deployment(deployment).await?;
        check_schedule(&spec)?;
        // An interval without an anchor keeps the one it has.
        let spec = match (&spec.interval, spec.anchor, &existing.when) {
            (Some(_), None, When::Interval { anchor, .. }) => ScheduleSpec {
                anchor: Some(*anchor),
                ..spec
            },
            _ => spec,
        };
        let when = match (&spec.at, &existing.when) {
            // A one-off time that passed after it was first applied.
            (Some(at), When::Once { at: was }) if to_second(*at) == *was => existing.when.clone(),
            _ => spec.when(now)?,
        };
        let same = when == existing.when
            && spec.parameters == existing.parameters
            && spec.job_variables == existing.job_variables
            && spec.catchup == existing.catchup;
        let mut s = existing.clone();
        if !same {
            self.check_schedule_job(&d, &spec.job_variables).await?;
            s.when = when;
            s.parameters = spec.parameters;
            s.job_variables = spec.job_variables;
            s.catchup = spec.catchup;
            s.generation = s.generation.saturating_add(1);
            s.created_through = s.created_through.max(to_second(now));
            s.updated_at = now;
        }
        if let Some(p) = paused {
            s.paused = p;
        }
        if s != existing {
            self.store.replace_schedule(&s).await?;
            if !same || s.paused {
                self.cancel_schedule_runs(&existing, "changed by the config file")
                    .await?;
            }
            self.wake_schedules();
        }
        Ok(s)
    }

    /// Cancels the schedule generation's runs that still wait.
    pub(crate) async fn cancel_schedule_runs(&self, s: &Schedule, why: &str) -> Result<()> {
        let ids = self
            .store
            .waiting_runs_keyed(&s.deployment, &s.key_prefix())
            .await?;
        for id in ids {
            let message = format!(
                "cancelled before its time: schedule {:?} of deployment {:?} was {why}",
                s.name, s.deployment
            );
            if let Err(e) = self.cancel_waiting(id, message, Cause::API, None).await {
                warn!(run = %id, "cannot cancel a run of schedule {}: {e}", s.name);
            }
        }
        Ok(())
    }
}
