"""my-plugin (mutator) as a WebAssembly component (weir:plugin@0.2.0): the
exports Weir calls. The policy is in `policy.py`."""
import json

from policy import SCHEMA, mutate
from weir_plugin import Job, Refused, RunView, config_object, refusal
from wit_world import exports
from wit_world.imports import log
from wit_world.imports.types import Description, Mutation_Job, Mutation_Reject


class Plugin(exports.Plugin):
    def describe(self) -> Description:
        return Description(
            name="my-plugin",
            version="0.1.0",
            summary="sets environment variables on a run's job",
            config_schema=json.dumps(SCHEMA),
        )

    def validate_config(self, config: str) -> None:
        # The host has checked the schema; check here what it cannot say.
        return None


class Mutator(exports.Mutator):
    def mutate(self, config: str, run, job: str):
        cfg = config_object(config)
        try:
            changed = Job.from_text(job)
            mutate(cfg, RunView.from_resource(run), changed)
        except Refused as refused:
            return Mutation_Reject(refusal(refused))
        log.log(log.Level.INFO, "set environment", [("variables", str(len(cfg["env"])))])
        # The whole job: the host computes the patch, checks and records it.
        return Mutation_Job(changed.to_text())
