//! RFC 6902 operations (the WIT `patch-op`) and the diff that produces them.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use json_patch::jsonptr::PointerBuf;
use json_patch::{
    AddOperation, CopyOperation, MoveOperation, PatchOperation, RemoveOperation, ReplaceOperation,
    TestOperation,
};

use crate::error::{Refusal, Result};

/// The operation of a [`PatchOp`] (the WIT `patch-kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchKind {
    Add,
    Remove,
    Replace,
    Move,
    Copy,
    Test,
}

/// One RFC 6902 operation, with `value` as JSON (the host receives it as JSON
/// text). `from` is set for move and copy, `value` for add, replace and test.
/// Its serde form is the RFC 6902 one (`{"op": "add", "path": ..., "value": ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatchOp {
    pub op: PatchKind,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl PatchOp {
    pub fn add(path: impl Into<String>, value: Value) -> Self {
        Self::with_value(PatchKind::Add, path, value)
    }

    pub fn replace(path: impl Into<String>, value: Value) -> Self {
        Self::with_value(PatchKind::Replace, path, value)
    }

    pub fn test(path: impl Into<String>, value: Value) -> Self {
        Self::with_value(PatchKind::Test, path, value)
    }

    pub fn remove(path: impl Into<String>) -> Self {
        Self {
            op: PatchKind::Remove,
            path: path.into(),
            from: None,
            value: None,
        }
    }

    pub fn move_from(from: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            op: PatchKind::Move,
            path: path.into(),
            from: Some(from.into()),
            value: None,
        }
    }

    pub fn copy_from(from: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            op: PatchKind::Copy,
            path: path.into(),
            from: Some(from.into()),
            value: None,
        }
    }

    fn with_value(op: PatchKind, path: impl Into<String>, value: Value) -> Self {
        Self {
            op,
            path: path.into(),
            from: None,
            value: Some(value),
        }
    }

    /// `value` as JSON text, as the WIT record carries it.
    pub fn value_json(&self) -> Option<String> {
        self.value.as_ref().map(Value::to_string)
    }

    fn to_json_patch(&self) -> Result<PatchOperation> {
        let ptr = |p: &str| {
            PointerBuf::parse(p)
                .map_err(|e| Refusal::new("bad-patch", format!("invalid JSON pointer {p:?}: {e}")))
        };
        let path = ptr(&self.path)?;
        let value = || {
            self.value.clone().ok_or_else(|| {
                Refusal::new(
                    "bad-patch",
                    format!("{:?} of {} has no value", self.op, self.path),
                )
            })
        };
        let from = || match &self.from {
            Some(f) => ptr(f),
            None => Err(Refusal::new(
                "bad-patch",
                format!("{:?} to {} has no from", self.op, self.path),
            )),
        };
        Ok(match self.op {
            PatchKind::Add => PatchOperation::Add(AddOperation {
                path,
                value: value()?,
            }),
            PatchKind::Remove => PatchOperation::Remove(RemoveOperation { path }),
            PatchKind::Replace => PatchOperation::Replace(ReplaceOperation {
                path,
                value: value()?,
            }),
            PatchKind::Move => PatchOperation::Move(MoveOperation {
                from: from()?,
                path,
            }),
            PatchKind::Copy => PatchOperation::Copy(CopyOperation {
                from: from()?,
                path,
            }),
            PatchKind::Test => PatchOperation::Test(TestOperation {
                path,
                value: value()?,
            }),
        })
    }

    fn from_json_patch(op: PatchOperation) -> Self {
        match op {
            PatchOperation::Add(o) => Self::add(o.path.to_string(), o.value),
            PatchOperation::Remove(o) => Self::remove(o.path.to_string()),
            PatchOperation::Replace(o) => Self::replace(o.path.to_string(), o.value),
            PatchOperation::Move(o) => Self::move_from(o.from.to_string(), o.path.to_string()),
            PatchOperation::Copy(o) => Self::copy_from(o.from.to_string(), o.path.to_string()),
            PatchOperation::Test(o) => Self::test(o.path.to_string(), o.value),
        }
    }
}

/// The RFC 6902 operations that turn `before` into `after`: change a copy of
/// the job, then return `diff(&original, &changed)`. (`Job::into_patch` does
/// this for you.)
pub fn diff(before: &Value, after: &Value) -> Vec<PatchOp> {
    json_patch::diff(before, after)
        .0
        .into_iter()
        .map(PatchOp::from_json_patch)
        .collect()
}

/// Applies `ops` to `doc`, all or nothing, as the host does (for tests and
/// local checks).
pub fn apply(doc: &mut Value, ops: &[PatchOp]) -> Result<()> {
    let ops = ops
        .iter()
        .map(PatchOp::to_json_patch)
        .collect::<Result<Vec<_>>>()?;
    json_patch::patch(doc, &ops)
        .map_err(|e| Refusal::new("bad-patch", format!("patch does not apply: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_round_trips() {
        let before = json!({"a": 1, "b": {"c": [1, 2]}, "d": "x", "e/f": 1});
        let after = json!({"a": 2, "b": {"c": [1, 2, 3], "n": null}, "e/f": 2});
        let ops = diff(&before, &after);
        assert!(!ops.is_empty());
        let mut doc = before.clone();
        apply(&mut doc, &ops).expect("applies");
        assert_eq!(doc, after);
        assert!(ops.iter().any(|o| o.path == "/e~1f"), "{ops:?}");
    }

    #[test]
    fn no_change_no_ops() {
        let v = json!({"a": [1, {"b": 2}]});
        assert!(diff(&v, &v.clone()).is_empty());
    }

    #[test]
    fn ops_serialize_as_rfc6902() {
        let ops = vec![
            PatchOp::add("/a", json!({"x": 1})),
            PatchOp::remove("/b"),
            PatchOp::move_from("/c", "/d"),
        ];
        assert_eq!(
            serde_json::to_value(&ops).expect("serializes"),
            json!([
                {"op": "add", "path": "/a", "value": {"x": 1}},
                {"op": "remove", "path": "/b"},
                {"op": "move", "from": "/c", "path": "/d"},
            ])
        );
        assert_eq!(ops[0].value_json().as_deref(), Some(r#"{"x":1}"#));
        assert_eq!(ops[1].value_json(), None);
    }

    #[test]
    fn apply_reports_bad_ops() {
        let mut doc = json!({"a": 1});
        assert!(apply(&mut doc, &[PatchOp::remove("/nope")]).is_err());
        assert!(apply(&mut doc, &[PatchOp::remove("no-slash")]).is_err());
        let missing_value = PatchOp {
            op: PatchKind::Add,
            path: "/b".into(),
            from: None,
            value: None,
        };
        assert!(apply(&mut doc, &[missing_value]).is_err());
        apply(
            &mut doc,
            &[
                PatchOp::copy_from("/a", "/b"),
                PatchOp::test("/b", json!(1)),
            ],
        )
        .expect("applies");
        assert_eq!(doc, json!({"a": 1, "b": 1}));
    }
}
