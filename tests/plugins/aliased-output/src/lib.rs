//! Hostile mutator: 1,000 patch ops whose `value` strings all point at one
//! 8 MiB string in guest memory. The guest holds 8 MiB; a host that copied
//! every element would materialise 8 GB. The host must stop the copy at its
//! output cap.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "mutator-plugin" });

use exports::weir::plugin::config::Guest as Config;
use exports::weir::plugin::mutator::Guest as Mutator;
use weir::plugin::types::{PatchKind, PatchOp, PluginError, RunContext};

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
        let len = 8 << 20;
        let mut text = String::with_capacity(len + 2);
        text.push('"');
        text.extend(std::iter::repeat_n('x', len));
        text.push('"');
        let mut shared = std::mem::ManuallyDrop::new(text);
        let (ptr, len, cap) = (shared.as_mut_ptr(), shared.len(), shared.capacity());
        Ok((0..1000)
            .map(|i| PatchOp {
                op: PatchKind::Add,
                path: format!("/env/A{i}"),
                from: None,
                // SAFETY: deliberately not: every op "owns" the same buffer,
                // which is the attack. The instance is thrown away after the
                // call, so the guest's double frees never matter.
                value: Some(unsafe { String::from_raw_parts(ptr, len, cap) }),
            })
            .collect())
    }
}

export!(Plugin);
