"""`hostile` in Python: an admission plugin (weir:plugin@0.1.0) whose config
says how to misbehave, so the sandbox's tests can show a Python guest is held
to the same bounds as a Rust one.

Config: {"do": "admit" | "reject" | "loop" | "allocate" | "raise" | "error" | "remember"}
- admit / reject: a normal decision (the control case);
- loop: never returns (the deadline must stop it);
- allocate: keeps allocating 1 MiB buffers (the memory cap must stop it);
- raise: an uncaught Python exception (a trap);
- error: the contract's plugin error;
- remember: admits, unless this instance has judged a run before (module
  state that a fresh instance never has), which it rejects as a leak.
"""
import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports.types import (
    Admission_Admit,
    Admission_Reject,
    PluginError,
    RunContext,
    Stats,
)

BEHAVIOURS = ("admit", "reject", "loop", "allocate", "raise", "error", "remember")

# The runs this instance has judged: empty in the build's snapshot, so empty
# in every fresh instance.
SEEN = []


def behaviour(text: str) -> str:
    cfg = json.loads(text) if text.strip() else {}
    do = cfg.get("do", "admit") if isinstance(cfg, dict) else None
    if do not in BEHAVIOURS:
        raise Err(PluginError(f"config key `do`: must be one of {', '.join(BEHAVIOURS)}"))
    return do


class Config(exports.Config):
    def validate_config(self, config: str) -> None:
        behaviour(config)


class Admission(exports.Admission):
    def admit(self, config: str, ctx: RunContext, stats: Stats):
        do = behaviour(config)
        if do == "reject":
            return Admission_Reject(f"python refuses run {ctx.run_id}")
        if do == "loop":
            while True:
                pass
        if do == "allocate":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if do == "raise":
            raise RuntimeError("an uncaught Python exception")
        if do == "error":
            raise Err(PluginError("python says no"))
        if do == "remember":
            SEEN.append(ctx.run_id)
            if len(SEEN) > 1:
                return Admission_Reject(f"state leaked: this instance has judged {len(SEEN)} runs")
        return Admission_Admit()
