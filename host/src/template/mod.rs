//! Prefect-compatible base job templates.
//!
//! A base job template is `{"job_configuration": {...}, "variables": <JSON Schema>}`. A run's
//! job is built in three steps:
//!
//! 1. [`BaseJobTemplate::resolve_variables`]: schema `default`s, then the deployment's
//!    `job_variables`, then the run's, merged and validated against the `variables` schema.
//! 2. [`BaseJobTemplate::render`]: `{{ name }}` placeholders in `job_configuration` are replaced
//!    by those variables (see [`render`](BaseJobTemplate::render) for the exact rules).
//! 3. [`finalize`]: the rendered configuration is normalised for its backend (Kubernetes Job
//!    manifest or local process) and stamped with Weir's run metadata.
//!
//! [`build_job`] does all three. Every error is a [`TemplateError`] naming the offending field.

mod finalize;
mod render;
mod variables;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;

use serde_json::{Map, Value};

pub(crate) use crate::domain::{BaseJobTemplate, TemplateKind};
pub(crate) use finalize::{LABEL_RUN_ID, finalize};

/// An error from loading a template, resolving variables or finalising a job.
///
/// Every variant names the offending field, as a dotted path rooted at what the user supplied:
/// `base_job_template.…` for the template itself, `job_variables.<name>` for variables and
/// `job_configuration.…` for the rendered job (plus `run_id` for bad run metadata).
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// The base job template itself is malformed.
    #[error("invalid base job template at {field}: {reason}")]
    InvalidTemplate { field: String, reason: String },
    /// A job variable is not declared in the template's `variables.properties`.
    #[error("unknown job variable {field}: {reason}")]
    UnknownVariable { field: String, reason: String },
    /// A variable listed in `variables.required` has no value.
    #[error("missing job variable {field}: {reason}")]
    MissingVariable { field: String, reason: String },
    /// A job variable's value does not match the template's schema.
    #[error("invalid job variable {field}: {reason}")]
    InvalidVariable { field: String, reason: String },
    /// The (rendered or user-supplied) job configuration cannot become a job.
    #[error("invalid job configuration at {field}: {reason}")]
    InvalidJob { field: String, reason: String },
}

impl TemplateError {
    /// The dotted path of the offending field, e.g. `job_variables.cpu_limit`.
    pub fn field(&self) -> &str {
        match self {
            TemplateError::InvalidTemplate { field, .. }
            | TemplateError::UnknownVariable { field, .. }
            | TemplateError::MissingVariable { field, .. }
            | TemplateError::InvalidVariable { field, .. }
            | TemplateError::InvalidJob { field, .. } => field,
        }
    }

    /// The human-readable reason, without the field.
    pub fn reason(&self) -> &str {
        match self {
            TemplateError::InvalidTemplate { reason, .. }
            | TemplateError::UnknownVariable { reason, .. }
            | TemplateError::MissingVariable { reason, .. }
            | TemplateError::InvalidVariable { reason, .. }
            | TemplateError::InvalidJob { reason, .. } => reason,
        }
    }

    pub(crate) fn template(field: impl Into<String>, reason: impl Into<String>) -> Self {
        TemplateError::InvalidTemplate {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn job(field: impl Into<String>, reason: impl Into<String>) -> Self {
        TemplateError::InvalidJob {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl TryFrom<Value> for BaseJobTemplate {
    type Error = TemplateError;

    fn try_from(value: Value) -> Result<Self, Self::Error> {
        BaseJobTemplate::from_value(value)
    }
}

const DEFAULT_PROCESS: &str = include_str!("default-process.json");
const DEFAULT_KUBERNETES: &str = include_str!("default-kubernetes.json");

impl BaseJobTemplate {
    /// Checks the shape and builds a template.
    ///
    /// The value must be an object with an object `job_configuration` and an object `variables`
    /// that compiles as a JSON Schema, whose `type` (if given) is `"object"`, whose `properties`
    /// is an object of schemas, whose `required` (if given) lists declared properties, and whose
    /// non-null `default`s satisfy the schema. Every placeholder in `job_configuration` must name
    /// a declared variable (as Prefect checks on work-pool creation; Prefect's
    /// `{{ prefect.blocks… }}` / `{{ prefect.variables… }}` references are not supported).
    /// Other top-level keys are ignored. Errors name the field, e.g.
    /// `base_job_template.variables.properties.image`.
    pub fn from_value(value: Value) -> Result<Self, TemplateError> {
        if let Err(e) = crate::domain::document::check_depth("base_job_template", &value) {
            return Err(TemplateError::template("base_job_template", e.reason));
        }
        let Value::Object(mut map) = value else {
            return Err(TemplateError::template(
                "base_job_template",
                "must be a JSON object with `job_configuration` and `variables`",
            ));
        };
        let job_configuration = match map.remove("job_configuration") {
            Some(v @ Value::Object(_)) => v,
            Some(other) => {
                return Err(TemplateError::template(
                    "base_job_template.job_configuration",
                    format!("must be an object, got {}", render::type_name(&other)),
                ));
            }
            None => {
                return Err(TemplateError::template(
                    "base_job_template.job_configuration",
                    "is required",
                ));
            }
        };
        let variables = match map.remove("variables") {
            Some(v @ Value::Object(_)) => v,
            Some(other) => {
                return Err(TemplateError::template(
                    "base_job_template.variables",
                    format!(
                        "must be a JSON Schema object, got {}",
                        render::type_name(&other)
                    ),
                ));
            }
            None => {
                return Err(TemplateError::template(
                    "base_job_template.variables",
                    "is required",
                ));
            }
        };
        let template = BaseJobTemplate {
            job_configuration,
            variables,
        };
        variables::check_schema(&template.variables)?;
        template.check_placeholders()?;
        Ok(template)
    }

    /// Weir's built-in default template for `kind` (`default-process.json` /
    /// `default-kubernetes.json` in this folder).
    pub fn default_for(kind: TemplateKind) -> Self {
        let text = match kind {
            TemplateKind::Process => DEFAULT_PROCESS,
            TemplateKind::Kubernetes => DEFAULT_KUBERNETES,
        };
        let value: Value = serde_json::from_str(text).expect("built-in template is valid JSON");
        BaseJobTemplate::from_value(value).expect("built-in template is a valid base job template")
    }

    /// The variable names declared in `variables.properties`, in declaration order.
    pub fn variable_names(&self) -> Vec<&str> {
        self.variables
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Merges and validates the job variables.
    ///
    /// Values are layered: the schema's `default`s, then each of `layers` in order (deployment
    /// `job_variables`, then the run's). Within a layer, keys are applied in order:
    ///
    /// * `name: value` replaces variable `name` wholesale — except `env`, whose object value is
    ///   merged key by key into the current `env` (a `null` entry deletes that key). A
    ///   non-object `env` replaces wholesale.
    /// * A dotted key `a.b.c: value` (when `a.b.c` is not itself a declared variable) sets the
    ///   nested key `c` inside `a.b` inside variable `a`, creating objects as needed and
    ///   replacing non-objects on the way; the rest of `a` is kept. A `null` value deletes the
    ///   nested key. So `env.FOO: "x"` is the same as `env: {FOO: "x"}`.
    /// * A top-level `null` sets the variable to null, which means "unset": null variables are
    ///   not validated against their type, count as missing for `required`, are dropped from the
    ///   returned map and are missing when rendering.
    ///
    /// Then the merged map is validated: unknown variables (not in `properties`, whatever
    /// `additionalProperties` says), missing `required` ones and schema violations are errors
    /// whose field is `job_variables.<name>`.
    pub fn resolve_variables(
        &self,
        layers: &[&Map<String, Value>],
    ) -> Result<Map<String, Value>, TemplateError> {
        variables::resolve(&self.variables, layers)
    }

    /// Substitutes placeholders in `job_configuration` with `variables`. Pure.
    ///
    /// * `{{ name }}` (whitespace inside the braces optional; names are letters, digits, `_`,
    ///   `-` and `.`) looks up `name`; a dotted name `a.b` that is not itself a variable walks
    ///   into object `a` (or list `a` by index).
    /// * A string that is exactly one placeholder becomes the value itself, with its JSON type.
    ///   If the value is missing or null, the key is removed from its object (or the item from
    ///   its list; a missing root becomes `null`).
    /// * Placeholders inside a longer string are replaced by the value's text — strings as-is,
    ///   other values as compact JSON, missing/null as `""` — exactly once: inserted text is
    ///   never expanded again.
    /// * Object keys and non-string values are copied unchanged.
    pub fn render(&self, variables: &Map<String, Value>) -> Value {
        render::render_value(&self.job_configuration, variables).unwrap_or(Value::Null)
    }

    fn check_placeholders(&self) -> Result<(), TemplateError> {
        let declared = self.variables.get("properties").and_then(Value::as_object);
        let is_declared = |name: &str| declared.is_some_and(|d| d.contains_key(name));
        let mut undeclared = Vec::new();
        render::for_each_placeholder(&self.job_configuration, &mut |name| {
            let known = is_declared(name) || name.split('.').next().is_some_and(is_declared);
            if !known && !undeclared.iter().any(|u: &String| u == name) {
                undeclared.push(name.to_owned());
            }
        });
        if undeclared.is_empty() {
            return Ok(());
        }
        let hint = if undeclared.iter().any(|n| n.starts_with("prefect.")) {
            " (Prefect block and variable references are not supported)"
        } else {
            ""
        };
        Err(TemplateError::template(
            "base_job_template.job_configuration",
            format!(
                "placeholders must name variables declared in variables.properties; \
                 undeclared: {}{hint}",
                undeclared.join(", ")
            ),
        ))
    }
}

/// What Weir stamps onto every job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RunMetadata<'a> {
    /// The run's id (a UUID); becomes the Kubernetes job name `weir-<run_id>`.
    pub run_id: &'a str,
    /// The work pool's name.
    pub pool: &'a str,
    /// The work queue's name.
    pub queue: &'a str,
    /// The deployment's name, for runs created from a deployment.
    pub deployment: Option<&'a str>,
    /// Weir's API base URL, exported to the job as `WEIR_API_URL`.
    pub api_url: &'a str,
    /// The run's parameters as JSON text, exported as `WEIR_PARAMETERS`.
    pub parameters: &'a str,
    /// The run's token, exported as `WEIR_RUN_TOKEN` (when auth is on).
    pub run_token: Option<&'a str>,
}

/// Convenience: [`resolve_variables`](BaseJobTemplate::resolve_variables), then
/// [`render`](BaseJobTemplate::render), then [`finalize`].
pub(crate) fn build_job(
    template: &BaseJobTemplate,
    kind: TemplateKind,
    layers: &[&Map<String, Value>],
    meta: &RunMetadata,
) -> Result<Value, TemplateError> {
    let variables = template.resolve_variables(layers)?;
    let rendered = template.render(&variables);
    finalize(kind, rendered, meta)
}
