//! Hostile mutator: about 300 small patch ops (no value deeper than 99
//! levels, ~60 KB in all) that nest the job 10,000 levels deep. Each round
//! adds a 99-level chain at `/env/Y` and moves what was built so far to its
//! tip, then moves the chain back to `/env/X`. Before the host bounded the
//! patched job's depth op by op, applying this overflowed the host's stack.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "mutator-plugin" });

use exports::weir::plugin::config::Guest as Config;
use exports::weir::plugin::mutator::Guest as Mutator;
use weir::plugin::types::{PatchKind, PatchOp, PluginError, RunContext};

const LINK: usize = 99;
const ROUNDS: usize = 101;

struct Plugin;

impl Config for Plugin {
    fn validate_config(_config: String) -> Result<(), PluginError> {
        Ok(())
    }
}

fn op(op: PatchKind, path: String, from: Option<String>, value: Option<String>) -> PatchOp {
    PatchOp {
        op,
        path,
        from,
        value,
    }
}

impl Mutator for Plugin {
    fn mutate(
        _config: String,
        _ctx: RunContext,
        _job: String,
    ) -> Result<Vec<PatchOp>, PluginError> {
        // {"a":{"a":...{"a":{}}...}}, LINK levels.
        let chain = format!("{}{{}}{}", "{\"a\":".repeat(LINK - 1), "}".repeat(LINK - 1));
        let tip = format!("/env/Y{}", "/a".repeat(LINK - 1));
        let mut ops = vec![op(PatchKind::Add, "/env/X".into(), None, Some("{}".into()))];
        for _ in 0..ROUNDS {
            ops.push(op(
                PatchKind::Add,
                "/env/Y".into(),
                None,
                Some(chain.clone()),
            ));
            ops.push(op(
                PatchKind::Move,
                format!("{tip}/x"),
                Some("/env/X".into()),
                None,
            ));
            ops.push(op(
                PatchKind::Move,
                "/env/X".into(),
                Some("/env/Y".into()),
                None,
            ));
        }
        Ok(ops)
    }
}

export!(Plugin);
