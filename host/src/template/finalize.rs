//! Turning a rendered job configuration into the final job for a backend.

use serde_json::{Map, Value, json};

use super::render::type_name;
use super::{RunMetadata, TemplateError, TemplateKind};

/// Environment variable holding Weir's API base URL.
pub(super) const ENV_API_URL: &str = "WEIR_API_URL";
/// Environment variable holding the run's id.
pub(super) const ENV_RUN_ID: &str = "WEIR_RUN_ID";
/// Environment variable holding the run's parameters as JSON text.
pub(super) const ENV_PARAMETERS: &str = "WEIR_PARAMETERS";
/// Environment variable holding the run's token (`host/src/auth/`).
pub(super) const ENV_RUN_TOKEN: &str = "WEIR_RUN_TOKEN";
/// Label holding the run id.
pub(crate) const LABEL_RUN_ID: &str = "weir.dev/run-id";
/// Label holding the work pool's name.
pub(super) const LABEL_POOL: &str = "weir.dev/pool";
/// Label holding the work queue's name.
pub(super) const LABEL_QUEUE: &str = "weir.dev/queue";
/// Label holding the deployment's name (only for runs of a deployment).
pub(super) const LABEL_DEPLOYMENT: &str = "weir.dev/deployment";

const ROOT: &str = "job_configuration";
const MAX_LABEL_VALUE: usize = 63;

/// Turns a rendered (or raw, user-supplied) `job_configuration` into the final job.
///
/// **Kubernetes** — `job_manifest` (required object, `apiVersion: batch/v1`, `kind: Job`) and
/// `namespace` (optional string, default `"default"`):
/// * in every container and init container, an object `env` becomes the
///   `[{"name", "value"}]` list (nulls dropped, numbers/booleans as their text, order kept), a
///   list stays a list, and `WEIR_API_URL` / `WEIR_RUN_ID` entries are added or replaced;
///   a string `command` or `args` is split shell-style;
/// * the `weir.dev/run-id`, `weir.dev/pool`, `weir.dev/queue` (and `weir.dev/deployment`)
///   labels are set on the Job and on its pod template (pool, queue and deployment names are
///   sanitised into valid label values; user labels are kept);
/// * the Job is named `weir-<run_id>` (lowercase; `generateName` removed) and gets
///   `metadata.namespace` from `namespace` when it has none; `namespace` in the returned
///   configuration is set to the Job's namespace (a conflicting pair is an error).
///
/// The whole configuration is returned, other keys kept.
///
/// **Process** — `command` (required: non-empty string, split shell-style, or non-empty list
/// of strings), `env` (optional object; nulls dropped, numbers/booleans as text; the `WEIR_*`
/// variables added), `working_dir` (optional string) and `timeout_seconds` (optional positive
/// integer); null optional keys are omitted and unknown keys are kept after the known ones.
///
/// `meta.run_id` must be a valid Kubernetes name part (letters, digits and `-`, alphanumeric at
/// both ends, at most 58 characters) for both kinds; errors name the field.
pub(crate) fn finalize(
    kind: TemplateKind,
    job_configuration: Value,
    meta: &RunMetadata,
) -> Result<Value, TemplateError> {
    check_run_id(meta.run_id)?;
    // Rendered variables and mutators' patches can nest a job deeper than
    // any one input; the job is stored (and read back) with the run.
    if let Err(e) = crate::domain::document::check_depth(ROOT, &job_configuration) {
        return Err(TemplateError::job(ROOT, e.reason));
    }
    let Value::Object(config) = job_configuration else {
        return Err(TemplateError::job(
            ROOT,
            format!("must be an object, got {}", type_name(&job_configuration)),
        ));
    };
    match kind {
        TemplateKind::Kubernetes => finalize_kubernetes(config, meta),
        TemplateKind::Process => finalize_process(config, meta),
    }
}

fn check_run_id(run_id: &str) -> Result<(), TemplateError> {
    let valid = !run_id.is_empty()
        && run_id.len() <= MAX_LABEL_VALUE - "weir-".len()
        && run_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        && run_id.starts_with(|c: char| c.is_ascii_alphanumeric())
        && run_id.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(TemplateError::job(
            "run_id",
            format!(
                "\"{run_id}\" cannot name a job: use letters, digits and '-', starting and \
                 ending with a letter or digit, at most 58 characters"
            ),
        ))
    }
}

/// Makes `value` a valid Kubernetes label value: characters other than letters, digits, `-`,
/// `_` and `.` become `-`, it is cut to 63 characters, and non-alphanumeric ends are trimmed.
pub(crate) fn label_value(value: &str) -> String {
    let replaced: String = value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_LABEL_VALUE)
        .collect();
    replaced
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters: a
/// label's name and a non-empty label value.
fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LABEL_VALUE
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A DNS-1123 subdomain (a label key's prefix): at most 253 characters of
/// dot-separated lowercase labels.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

/// Labels the API server would refuse are refused here, naming the label,
/// so a bad `labels` job variable fails at submit rather than at the create.
fn validate_labels(labels: &Map<String, Value>, field: &str) -> Result<(), TemplateError> {
    for (key, value) in labels {
        let here = format!("{field}.{key}");
        let (prefix, name) = match key.rsplit_once('/') {
            Some((p, n)) => (Some(p), n),
            None => (None, key.as_str()),
        };
        if prefix.is_some_and(|p| !is_dns_subdomain(p)) || !is_label_name(name) {
            return Err(TemplateError::job(
                here,
                "is not a valid label key: an optional DNS subdomain prefix and '/', then at \
                 most 63 letters, digits, '-', '_' or '.', beginning and ending with a letter \
                 or digit",
            ));
        }
        match value {
            Value::String(v) if v.is_empty() || is_label_name(v) => {}
            Value::String(_) => {
                return Err(TemplateError::job(
                    here,
                    "is not a valid label value: at most 63 letters, digits, '-', '_' or '.', \
                     beginning and ending with a letter or digit",
                ));
            }
            other => {
                return Err(TemplateError::job(
                    here,
                    format!("a label value must be a string, got {other}"),
                ));
            }
        }
    }
    Ok(())
}

/// The value of an environment variable, or `None` to drop it.
fn env_text(value: &Value, field: &str) -> Result<Option<String>, TemplateError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Number(_) | Value::Bool(_) => Ok(Some(value.to_string())),
        other => Err(TemplateError::job(
            field,
            format!(
                "environment values must be strings, got {}",
                type_name(other)
            ),
        )),
    }
}

/// Splits a shell-style command line.
fn split_command(line: &str, field: &str) -> Result<Vec<Value>, TemplateError> {
    shell_words::split(line)
        .map(|words| words.into_iter().map(Value::String).collect())
        .map_err(|e| TemplateError::job(field, format!("cannot split {line:?} shell-style: {e}")))
}

// ----------------------------------------------------------------------------------------------
// Kubernetes

/// The object at `map[key]`, created if missing or null; an error if it is something else.
fn object_entry<'m>(
    map: &'m mut Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<&'m mut Map<String, Value>, TemplateError> {
    let entry = map
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if entry.is_null() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(obj) => Ok(obj),
        other => Err(TemplateError::job(
            field,
            format!("must be an object, got {}", type_name(other)),
        )),
    }
}

/// The object at `map[key]`, which must exist.
fn required_object<'m>(
    map: &'m mut Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<&'m mut Map<String, Value>, TemplateError> {
    match map.get_mut(key) {
        Some(Value::Object(obj)) => Ok(obj),
        Some(other) => Err(TemplateError::job(
            field,
            format!("must be an object, got {}", type_name(other)),
        )),
        None => Err(TemplateError::job(field, "is required")),
    }
}

fn optional_string(
    map: &Map<String, Value>,
    key: &str,
    field: &str,
) -> Result<Option<String>, TemplateError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(TemplateError::job(
            field,
            format!("must be a string, got {}", type_name(other)),
        )),
    }
}

fn finalize_kubernetes(
    mut config: Map<String, Value>,
    meta: &RunMetadata,
) -> Result<Value, TemplateError> {
    let config_namespace = optional_string(&config, "namespace", "job_configuration.namespace")?;
    let manifest_field = "job_configuration.job_manifest";
    let manifest = required_object(&mut config, "job_manifest", manifest_field)?;

    for (key, expected) in [("apiVersion", "batch/v1"), ("kind", "Job")] {
        match manifest.get(key) {
            Some(Value::String(s)) if s == expected => {}
            Some(other) => {
                return Err(TemplateError::job(
                    format!("{manifest_field}.{key}"),
                    format!("must be \"{expected}\", got {other}"),
                ));
            }
            None => {
                return Err(TemplateError::job(
                    format!("{manifest_field}.{key}"),
                    format!("is required and must be \"{expected}\""),
                ));
            }
        }
    }

    let labels = weir_labels(meta);

    // Job metadata: name, namespace, labels.
    let metadata_field = format!("{manifest_field}.metadata");
    let metadata = object_entry(manifest, "metadata", &metadata_field)?;
    metadata.shift_remove("generateName");
    metadata.insert(
        "name".to_owned(),
        Value::String(format!("weir-{}", meta.run_id.to_ascii_lowercase())),
    );
    let namespace_field = format!("{metadata_field}.namespace");
    let namespace = match (
        optional_string(metadata, "namespace", &namespace_field)?,
        config_namespace,
    ) {
        (Some(ours), Some(theirs)) if ours != theirs => {
            return Err(TemplateError::job(
                namespace_field,
                format!("\"{ours}\" conflicts with job_configuration.namespace \"{theirs}\""),
            ));
        }
        (Some(ns), _) | (None, Some(ns)) => ns,
        (None, None) => "default".to_owned(),
    };
    metadata.insert("namespace".to_owned(), Value::String(namespace.clone()));
    let job_labels = object_entry(metadata, "labels", &format!("{metadata_field}.labels"))?;
    job_labels.extend(labels.clone());
    validate_labels(job_labels, &format!("{metadata_field}.labels"))?;

    // Pod template: labels and containers.
    let spec_field = format!("{manifest_field}.spec");
    let spec = required_object(manifest, "spec", &spec_field)?;
    let template_field = format!("{spec_field}.template");
    let pod_template = required_object(spec, "template", &template_field)?;
    let pod_metadata_field = format!("{template_field}.metadata");
    let pod_metadata = object_entry(pod_template, "metadata", &pod_metadata_field)?;
    let pod_labels = object_entry(
        pod_metadata,
        "labels",
        &format!("{pod_metadata_field}.labels"),
    )?;
    pod_labels.extend(labels);
    validate_labels(pod_labels, &format!("{pod_metadata_field}.labels"))?;

    let pod_spec_field = format!("{template_field}.spec");
    let pod_spec = required_object(pod_template, "spec", &pod_spec_field)?;
    for key in ["containers", "initContainers"] {
        let field = format!("{pod_spec_field}.{key}");
        let containers = match pod_spec.get_mut(key) {
            Some(Value::Array(items)) if !items.is_empty() || key == "initContainers" => items,
            Some(Value::Array(_)) => {
                return Err(TemplateError::job(
                    field,
                    "must list at least one container",
                ));
            }
            None if key == "initContainers" => continue,
            None => return Err(TemplateError::job(field, "is required")),
            Some(other) => {
                return Err(TemplateError::job(
                    field,
                    format!("must be a list of containers, got {}", type_name(other)),
                ));
            }
        };
        for (index, container) in containers.iter_mut().enumerate() {
            let container_field = format!("{field}[{index}]");
            let Value::Object(container) = container else {
                return Err(TemplateError::job(
                    container_field,
                    format!("must be an object, got {}", type_name(container)),
                ));
            };
            finalize_container(container, &container_field, meta)?;
        }
    }

    config.insert("namespace".to_owned(), Value::String(namespace));
    Ok(Value::Object(config))
}

fn weir_labels(meta: &RunMetadata) -> Map<String, Value> {
    let mut labels = Map::new();
    labels.insert(LABEL_RUN_ID.to_owned(), json!(meta.run_id));
    labels.insert(LABEL_POOL.to_owned(), json!(label_value(meta.pool)));
    labels.insert(LABEL_QUEUE.to_owned(), json!(label_value(meta.queue)));
    if let Some(deployment) = meta.deployment {
        labels.insert(LABEL_DEPLOYMENT.to_owned(), json!(label_value(deployment)));
    }
    labels
}

fn finalize_container(
    container: &mut Map<String, Value>,
    field: &str,
    meta: &RunMetadata,
) -> Result<(), TemplateError> {
    for key in ["command", "args"] {
        let key_field = format!("{field}.{key}");
        match container.get(key) {
            Some(Value::String(line)) => {
                let words = split_command(line, &key_field)?;
                container.insert(key.to_owned(), Value::Array(words));
            }
            None | Some(Value::Array(_)) => {}
            Some(Value::Null) => {
                container.shift_remove(key);
            }
            Some(other) => {
                return Err(TemplateError::job(
                    key_field,
                    format!("must be a list or a string, got {}", type_name(other)),
                ));
            }
        }
    }

    let env_field = format!("{field}.env");
    let mut env: Vec<Value> = match container.get_mut("env").map(Value::take) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(Value::Object(vars)) => {
            let mut list = Vec::with_capacity(vars.len());
            for (name, value) in &vars {
                if let Some(text) = env_text(value, &format!("{env_field}.{name}"))? {
                    list.push(json!({"name": name, "value": text}));
                }
            }
            list
        }
        Some(other) => {
            return Err(TemplateError::job(
                env_field,
                format!(
                    "must be an object or a list of {{name, value}}, got {}",
                    type_name(&other)
                ),
            ));
        }
    };
    set_env_entry(&mut env, ENV_API_URL, meta.api_url);
    set_env_entry(&mut env, ENV_RUN_ID, meta.run_id);
    set_env_entry(&mut env, ENV_PARAMETERS, meta.parameters);
    if let Some(token) = meta.run_token {
        set_env_entry(&mut env, ENV_RUN_TOKEN, token);
    }
    container.insert("env".to_owned(), Value::Array(env));
    Ok(())
}

/// Replaces the first entry named `name` (dropping later duplicates) or appends one.
fn set_env_entry(env: &mut Vec<Value>, name: &str, value: &str) {
    let entry = json!({"name": name, "value": value});
    let named = |item: &Value| item.get("name").and_then(Value::as_str) == Some(name);
    match env.iter().position(named) {
        Some(index) => {
            env[index] = entry;
            let mut seen = 0usize;
            env.retain(|item| {
                if named(item) {
                    seen += 1;
                    seen == 1
                } else {
                    true
                }
            });
        }
        None => env.push(entry),
    }
}

// ----------------------------------------------------------------------------------------------
// Process

fn finalize_process(
    mut config: Map<String, Value>,
    meta: &RunMetadata,
) -> Result<Value, TemplateError> {
    let command_field = "job_configuration.command";
    let command = match config.shift_remove("command") {
        Some(Value::String(line)) => split_command(&line, command_field)?,
        Some(Value::Array(items)) => {
            if let Some(bad) = items.iter().position(|item| !item.is_string()) {
                return Err(TemplateError::job(
                    format!("{command_field}[{bad}]"),
                    format!("must be a string, got {}", type_name(&items[bad])),
                ));
            }
            items
        }
        None | Some(Value::Null) => {
            return Err(TemplateError::job(command_field, "is required"));
        }
        Some(other) => {
            return Err(TemplateError::job(
                command_field,
                format!(
                    "must be a string or a list of strings, got {}",
                    type_name(&other)
                ),
            ));
        }
    };
    if command.is_empty() {
        return Err(TemplateError::job(command_field, "must not be empty"));
    }

    let env_field = "job_configuration.env";
    let mut env = Map::new();
    match config.shift_remove("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(vars)) => {
            for (name, value) in vars {
                if let Some(text) = env_text(&value, &format!("{env_field}.{name}"))? {
                    env.insert(name, Value::String(text));
                }
            }
        }
        Some(other) => {
            return Err(TemplateError::job(
                env_field,
                format!("must be an object, got {}", type_name(&other)),
            ));
        }
    }
    env.insert(ENV_API_URL.to_owned(), json!(meta.api_url));
    env.insert(ENV_RUN_ID.to_owned(), json!(meta.run_id));
    env.insert(ENV_PARAMETERS.to_owned(), json!(meta.parameters));
    if let Some(token) = meta.run_token {
        env.insert(ENV_RUN_TOKEN.to_owned(), json!(token));
    }

    let working_dir = match config.shift_remove("working_dir") {
        None | Some(Value::Null) => None,
        Some(Value::String(dir)) if !dir.is_empty() => Some(Value::String(dir)),
        Some(other) => {
            return Err(TemplateError::job(
                "job_configuration.working_dir",
                format!("must be a non-empty string, got {other}"),
            ));
        }
    };
    let timeout = match config.shift_remove("timeout_seconds") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|s| s >= 1) => Some(Value::Number(n)),
        Some(other) => {
            return Err(TemplateError::job(
                "job_configuration.timeout_seconds",
                format!("must be a positive integer, got {other}"),
            ));
        }
    };

    let mut out = Map::new();
    out.insert("command".to_owned(), Value::Array(command));
    out.insert("env".to_owned(), Value::Object(env));
    if let Some(dir) = working_dir {
        out.insert("working_dir".to_owned(), dir);
    }
    if let Some(timeout) = timeout {
        out.insert("timeout_seconds".to_owned(), timeout);
    }
    out.extend(config);
    Ok(Value::Object(out))
}
