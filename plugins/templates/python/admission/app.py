"""my-plugin (admission) as a WebAssembly component (weir:plugin@0.2.0): the
exports Weir calls. The policy is in `policy.py`."""
import json

from policy import SCHEMA, admit
from weir_plugin import Refused, RunView, config_object, refusal
from wit_world import exports
from wit_world.imports import log, stats
from wit_world.imports.types import (
    Admission_Admit,
    Admission_Defer,
    Admission_Reject,
    Deferral,
    Description,
    Scope_Label,
)


def running(key: str, value: str) -> int:
    """Asks the host; computed only when asked."""
    return stats.occupancy(Scope_Label((key, value))).running


class Plugin(exports.Plugin):
    def describe(self) -> Description:
        return Description(
            name="my-plugin",
            version="0.1.0",
            summary="at most N running runs per team",
            config_schema=json.dumps(SCHEMA),
        )

    def validate_config(self, config: str) -> None:
        # The host has checked the schema; check here what it cannot say.
        return None


class Admission(exports.Admission):
    def admit(self, config: str, run):
        try:
            deferral = admit(config_object(config), RunView.from_resource(run), running)
        except Refused as refused:
            return Admission_Reject(refusal(refused))
        if deferral is None:
            return Admission_Admit()
        seconds, reason = deferral
        log.log(log.Level.INFO, "deferred", [("reason", reason)])
        return Admission_Defer(Deferral(seconds=seconds, reason=reason))
