//! Checking and applying a mutator's RFC 6902 operations to a rendered job.

use serde_json::{Map, Value};

use super::error::CallError;
use super::types::{MAX_PATCH_OPS, PatchKind, PatchOp};
use crate::domain::document::{MAX_DEPTH, MAX_JOB_BYTES, Shape};

/// Applies `ops` to a copy of `job` and returns the patched job and the ops
/// as an RFC 6902 JSON array (for the run's history).
///
/// Refused, as [`CallError::InvalidOutput`] naming the op: value text that is
/// not JSON, a missing `value` or `from`, a malformed pointer, an op that
/// writes at or under a `forbidden` pointer (its `path`, or the `from` of a
/// `move`, which removes it), and a patch that does not apply. Reads are
/// allowed anywhere (`test`, `copy` from a forbidden path). An op on an
/// ancestor that rewrites a forbidden path (replacing all of `metadata`, say)
/// is caught afterwards by comparing the forbidden values before and after.
pub(crate) fn apply(
    job: &Value,
    ops: &[PatchOp],
    forbidden: &[String],
) -> Result<(Value, Value), CallError> {
    let mut rfc_ops = Vec::with_capacity(ops.len());
    let mut patched = job.clone();
    // An upper bound on the patched job's shape, raised by each op; when it
    // passes a limit the job is measured again, exactly. So each op costs
    // what it adds, not the size of the whole job, and no op can build a
    // job deeper or larger than the limits by more than one op's worth.
    let mut bound = Shape::measure(job, MAX_DEPTH, MAX_JOB_BYTES);
    for (index, op) in ops.iter().enumerate() {
        let invalid = |what: String| CallError::InvalidOutput {
            reason: format!("op {index} ({} {}): {what}", op.op.as_str(), op.path),
        };
        if let Some(pointer) = writes_forbidden(op, forbidden) {
            return Err(invalid(format!("touches forbidden path {pointer}")));
        }
        let mut object = Map::new();
        object.insert("op".into(), Value::from(op.op.as_str()));
        object.insert("path".into(), Value::from(op.path.as_str()));
        let path_depth = op.path.matches('/').count();
        let grows = match op.op {
            PatchKind::Add | PatchKind::Replace | PatchKind::Test => {
                let text = op
                    .value
                    .as_deref()
                    .ok_or_else(|| invalid("has no value".into()))?;
                let value: Value = serde_json::from_str(text)
                    .map_err(|e| invalid(format!("value is not JSON: {e}")))?;
                let shape = Shape::measure(&value, MAX_DEPTH, usize::MAX);
                if shape.depth > MAX_DEPTH {
                    return Err(invalid(format!(
                        "value is nested more than {MAX_DEPTH} levels deep; at most {MAX_DEPTH} are accepted"
                    )));
                }
                object.insert("value".into(), value);
                match op.op {
                    PatchKind::Test => Shape::default(),
                    _ => Shape {
                        depth: path_depth + shape.depth,
                        bytes: shape.bytes,
                    },
                }
            }
            PatchKind::Move | PatchKind::Copy => {
                let from = op
                    .from
                    .as_deref()
                    .ok_or_else(|| invalid("has no from".into()))?;
                object.insert("from".into(), Value::from(from));
                // What lands at `path` is the subtree at `from`; a copy
                // also adds its size.
                let source = patched
                    .pointer(from)
                    .map(|v| Shape::measure(v, MAX_DEPTH, MAX_JOB_BYTES))
                    .unwrap_or_default();
                Shape {
                    depth: path_depth + source.depth,
                    bytes: if op.op == PatchKind::Copy {
                        source.bytes
                    } else {
                        0
                    },
                }
            }
            PatchKind::Remove => Shape::default(),
        };
        let object = Value::Object(object);
        let one: json_patch::PatchOperation = serde_json::from_value(object.clone())
            .map_err(|e| invalid(format!("malformed operation: {e}")))?;
        json_patch::patch(&mut patched, std::slice::from_ref(&one))
            .map_err(|e| invalid(format!("does not apply: {e}")))?;
        bound.depth = bound.depth.max(grows.depth);
        bound.bytes = bound.bytes.saturating_add(grows.bytes);
        if bound.depth > MAX_DEPTH || bound.bytes > MAX_JOB_BYTES {
            bound = Shape::measure(&patched, MAX_DEPTH, MAX_JOB_BYTES);
            if bound.depth > MAX_DEPTH {
                return Err(invalid(format!(
                    "the job would be nested more than {MAX_DEPTH} levels deep; at most {MAX_DEPTH} are accepted"
                )));
            }
            if bound.bytes > MAX_JOB_BYTES {
                return Err(invalid(format!(
                    "the job would be over {MAX_JOB_BYTES} bytes; a job may be at most that"
                )));
            }
        }
        rfc_ops.push(object);
    }
    for pointer in forbidden {
        if job.pointer(pointer) != patched.pointer(pointer) {
            return Err(CallError::InvalidOutput {
                reason: format!("patch changes forbidden path {pointer}"),
            });
        }
    }
    Ok((patched, Value::Array(rfc_ops)))
}

/// The forbidden pointer an op writes at or under, if any.
/// Takes the job a mutator returned whole (WIT 0.2.0 `mutation::job`): the
/// patched job is that job, and the patch recorded is the RFC 6902
/// operations that turn `job` into it, as an array (for the run's history).
/// The outcome is the one [`apply`] gives for those operations, had the
/// plugin returned them (an op writing at or under a `forbidden` pointer is
/// refused, naming it the same way), without turning them into text and
/// back and applying them to a copy of the job.
///
/// Refused, as [`CallError::InvalidOutput`]: text that is not JSON, a job
/// that is not an object or is deeper or larger than a job may be, a
/// difference of more than [`MAX_PATCH_OPS`] operations, and one that
/// touches a forbidden path.
pub(crate) fn accept_job(
    job: &Value,
    returned: &str,
    forbidden: &[String],
) -> Result<(Value, Value), CallError> {
    let invalid = |reason: String| CallError::InvalidOutput {
        reason: format!("the returned job: {reason}"),
    };
    if returned.len() > MAX_JOB_BYTES {
        return Err(invalid(format!(
            "{} bytes; a job is at most {MAX_JOB_BYTES}",
            returned.len()
        )));
    }
    // serde_json stops at 128 levels of nesting by itself; the job bound is
    // checked on what it read.
    let new: Value =
        serde_json::from_str(returned).map_err(|e| invalid(format!("not JSON: {e}")))?;
    if !new.is_object() {
        return Err(invalid("not a JSON object".into()));
    }
    let shape = Shape::measure(&new, MAX_DEPTH, MAX_JOB_BYTES);
    if shape.depth > MAX_DEPTH {
        return Err(invalid(format!(
            "nested more than {MAX_DEPTH} levels deep; at most {MAX_DEPTH} are accepted"
        )));
    }
    if shape.bytes > MAX_JOB_BYTES {
        return Err(invalid(format!(
            "over {MAX_JOB_BYTES} bytes; a job may be at most that"
        )));
    }
    let ops = json_patch::diff(job, &new).0;
    if ops.len() > MAX_PATCH_OPS {
        return Err(invalid(format!(
            "differs from the job it was given in {} operations; at most {MAX_PATCH_OPS} are accepted",
            ops.len()
        )));
    }
    let mut rfc_ops = Vec::with_capacity(ops.len());
    for (index, op) in ops.into_iter().enumerate() {
        use json_patch::PatchOperation as P;
        let (kind, path, from, value) = match op {
            P::Add(o) => (PatchKind::Add, o.path.to_string(), None, Some(o.value)),
            P::Remove(o) => (PatchKind::Remove, o.path.to_string(), None, None),
            P::Replace(o) => (PatchKind::Replace, o.path.to_string(), None, Some(o.value)),
            P::Move(o) => (
                PatchKind::Move,
                o.path.to_string(),
                Some(o.from.to_string()),
                None,
            ),
            P::Copy(o) => (
                PatchKind::Copy,
                o.path.to_string(),
                Some(o.from.to_string()),
                None,
            ),
            P::Test(o) => (PatchKind::Test, o.path.to_string(), None, Some(o.value)),
        };
        let checked = PatchOp {
            op: kind,
            path,
            from,
            value: None,
        };
        if let Some(pointer) = writes_forbidden(&checked, forbidden) {
            return Err(CallError::InvalidOutput {
                reason: format!(
                    "op {index} ({} {}): touches forbidden path {pointer}",
                    kind.as_str(),
                    checked.path
                ),
            });
        }
        // The same object, in the same key order, as `apply` records.
        let mut object = Map::new();
        object.insert("op".into(), Value::from(kind.as_str()));
        object.insert("path".into(), Value::from(checked.path));
        if let Some(value) = value {
            object.insert("value".into(), value);
        }
        if let Some(from) = checked.from {
            object.insert("from".into(), Value::from(from));
        }
        rfc_ops.push(Value::Object(object));
    }
    for pointer in forbidden {
        if job.pointer(pointer) != new.pointer(pointer) {
            return Err(CallError::InvalidOutput {
                reason: format!("patch changes forbidden path {pointer}"),
            });
        }
    }
    Ok((new, Value::Array(rfc_ops)))
}

fn writes_forbidden<'a>(op: &PatchOp, forbidden: &'a [String]) -> Option<&'a str> {
    let path = Some(op.path.as_str());
    let written: [Option<&str>; 2] = match op.op {
        PatchKind::Test => [None, None],
        PatchKind::Move => [path, op.from.as_deref()],
        PatchKind::Add | PatchKind::Remove | PatchKind::Replace | PatchKind::Copy => [path, None],
    };
    forbidden
        .iter()
        .map(String::as_str)
        .find(|f| written.iter().flatten().any(|p| is_at_or_under(p, f)))
}

/// `pointer` names `prefix` or something inside it (whole reference tokens:
/// `/a/name` is under `/a`, `/a/namespace` is not under `/a/name`).
fn is_at_or_under(pointer: &str, prefix: &str) -> bool {
    match pointer.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/') || prefix.is_empty(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What `apply` gives for the operations `accept_job` found.
    fn applied(job: &Value, patch: &Value, forbidden: &[String]) -> (Value, Value) {
        let ops: Vec<PatchOp> = patch
            .as_array()
            .expect("an array")
            .iter()
            .map(|op| PatchOp {
                op: match op["op"].as_str() {
                    Some("add") => PatchKind::Add,
                    Some("remove") => PatchKind::Remove,
                    Some("replace") => PatchKind::Replace,
                    Some("move") => PatchKind::Move,
                    Some("copy") => PatchKind::Copy,
                    _ => PatchKind::Test,
                },
                path: op["path"].as_str().expect("path").to_owned(),
                from: op["from"].as_str().map(str::to_owned),
                value: op.get("value").map(Value::to_string),
            })
            .collect();
        apply(job, &ops, forbidden).expect("the same ops apply")
    }

    #[test]
    fn a_returned_job_gives_what_its_patch_would() {
        let forbidden = vec!["/env/WEIR_RUN_ID".to_owned()];
        let job = json!({"command": ["true"], "env": {"WEIR_RUN_ID": "r", "A": "1"},
                         "spec": {"list": [1, 2, 3], "deep": {"x": {"y": 1}}}});
        for returned in [
            json!({"command": ["true"], "env": {"WEIR_RUN_ID": "r", "A": "2", "B": "3"},
                   "spec": {"list": [1, 2, 3], "deep": {"x": {"y": 1}}}}),
            json!({"command": ["false", "x"], "env": {"WEIR_RUN_ID": "r"},
                   "spec": {"list": [3], "deep": {}}, "extra": [{"k": null}]}),
            job.clone(),
        ] {
            let (taken, patch) =
                accept_job(&job, &returned.to_string(), &forbidden).expect("accepted");
            assert_eq!(taken, returned);
            let (via_apply, recorded) = applied(&job, &patch, &forbidden);
            assert_eq!(via_apply, returned);
            assert_eq!(recorded, patch);
        }
    }

    #[test]
    fn a_returned_job_is_held_to_the_forbidden_paths_and_bounds() {
        let forbidden = vec!["/env/WEIR_RUN_ID".to_owned()];
        let job = json!({"env": {"WEIR_RUN_ID": "r"}});
        let err = |returned: &str| {
            accept_job(&job, returned, &forbidden)
                .expect_err("refused")
                .to_string()
        };
        assert!(
            err(r#"{"env": {"WEIR_RUN_ID": "s"}}"#).contains(
                "op 0 (replace /env/WEIR_RUN_ID): touches forbidden path /env/WEIR_RUN_ID"
            )
        );
        assert!(err(r#"{"env": "gone"}"#).contains("forbidden path /env/WEIR_RUN_ID"));
        assert!(err(r#"{"env": {}}"#).contains("forbidden path /env/WEIR_RUN_ID"));
        assert!(err("[1]").contains("the returned job: not a JSON object"));
        assert!(err("{").contains("the returned job: not JSON"));
        let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
        assert!(
            err(&format!(
                r#"{{"env": {{"WEIR_RUN_ID": "r"}}, "d": {deep}}}"#
            ))
            .contains("nested more than")
        );
    }
}
