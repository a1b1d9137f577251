//! Good mutator: adds `ADDED=yes` to a process job's env.
//!
//! It also counts its calls in a static, and reports a second call in the same
//! instance with an extra op: the host instantiates afresh for every decision,
//! so a test that sees that extra op has caught state leaking between calls.

use std::sync::atomic::{AtomicU32, Ordering};

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "mutator-plugin" });

use exports::weir::plugin::config::Guest as Config;
use exports::weir::plugin::mutator::Guest as Mutator;
use weir::plugin::types::{PatchKind, PatchOp, PluginError, RunContext};

static CALLS: AtomicU32 = AtomicU32::new(0);

struct Plugin;

impl Config for Plugin {
    fn validate_config(_config: String) -> Result<(), PluginError> {
        Ok(())
    }
}

impl Mutator for Plugin {
    fn mutate(
        _config: String,
        _ctx: RunContext,
        _job: String,
    ) -> Result<Vec<PatchOp>, PluginError> {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        let mut ops = vec![PatchOp {
            op: PatchKind::Add,
            path: "/env/ADDED".to_string(),
            from: None,
            value: Some("\"yes\"".to_string()),
        }];
        if calls > 1 {
            ops.push(PatchOp {
                op: PatchKind::Add,
                path: "/env/LEAKED_CALLS".to_string(),
                from: None,
                value: Some(format!("\"{calls}\"")),
            });
        }
        Ok(ops)
    }
}

export!(Plugin);
