"""`gpu-node-selector` in Python (weir:plugin@0.2.0): the same policy as the
Rust example next to it (`../src/lib.rs`), making the same job changes. It
returns the whole changed job; the host computes the patch, checks it and
records it.

A run wants GPUs when it is tagged `tag` (default `gpu`), or its parameter or
job variable `gpu` is true, or its parameter or job variable `gpus` is a
positive integer N (the job variable wins). Its Kubernetes job then gets the
configured `node_selector` (merged), `tolerations` (appended unless already
there) and `resources.limits[resource] = N` on every container (and the
same request on a container that already requests it). Process jobs and runs
that want no GPU are returned unchanged.
"""
import json

from componentize_py_types import Err
from weir_plugin import Job, Refused, RunView, config_object, entry, refusal, resources, short
from wit_world import exports
from wit_world.imports import log
from wit_world.imports.types import Description, Mutation_Job, Run

SCHEMA = {
    "type": "object",
    "properties": {
        "tag": {"type": "string", "minLength": 1},
        "node_selector": {"type": "object", "additionalProperties": {"type": "string"}},
        "tolerations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["Exists", "Equal"]},
                    "value": {"type": "string"},
                    "effect": {"enum": ["", "NoSchedule", "PreferNoSchedule", "NoExecute"]},
                    "tolerationSeconds": {"type": "integer"},
                },
                "additionalProperties": False,
            },
        },
        "resource": {"type": "string", "minLength": 1},
    },
    "additionalProperties": False,
}


def wanted_gpus(tag: str, run: RunView) -> int:
    """How many GPUs the run wants (0: none)."""
    found = run.setting("gpus")
    if found is not None:
        source, v = found
        n = None
        if isinstance(v, int) and not isinstance(v, bool):
            n = v if v >= 0 else None
        elif isinstance(v, str) and v.strip().isdigit():
            n = int(v.strip())
        if n is None or n > 0xFFFFFFFF:
            raise Refused(
                "bad-gpu-request", f"{source} `gpus` must be a non-negative integer, got {short(v)}"
            )
        if n > 0:
            return n
    flagged = False
    found = run.setting("gpu")
    if found is not None:
        source, v = found
        if isinstance(v, bool):
            flagged = v
        elif v in ("true", "false"):
            flagged = v == "true"
        else:
            raise Refused("bad-gpu-request", f"{source} `gpu` must be true or false, got {short(v)}")
    return 1 if flagged or run.has_tag(tag) else 0


def place(config: dict, run: RunView, job: Job) -> bool:
    """Changes `job` in place for a run that wants GPUs; False if it does not."""
    if not job.is_kubernetes:
        return False
    gpus = wanted_gpus(config.get("tag", "gpu"), run)
    if gpus == 0:
        return False
    spec = job.pod_spec()
    if spec is None:
        log.log(log.Level.WARN, "kubernetes job has no pod spec; nothing to do", [])
        return False
    node_selector = config.get("node_selector", {})
    if node_selector:
        entry(spec, "nodeSelector", dict, "the pod spec's nodeSelector").update(node_selector)
    tolerations = config.get("tolerations", [])
    if tolerations:
        have = entry(spec, "tolerations", list, "the pod spec's tolerations")
        have.extend(t for t in tolerations if t not in have)
    resource = config.get("resource", "nvidia.com/gpu")
    amount = str(gpus)
    for container in job.containers():
        resources(container, "limits")[resource] = amount
        requests = (container.get("resources") or {}).get("requests")
        if isinstance(requests, dict) and resource in requests:
            requests[resource] = amount
    log.log(log.Level.INFO, "placed GPU run", [("gpus", amount), ("resource", resource)])
    return True


class Plugin(exports.Plugin):
    def describe(self) -> Description:
        return Description(
            name="gpu-node-selector",
            version="1.0.0",
            summary="puts GPU runs on GPU nodes",
            config_schema=json.dumps(SCHEMA),
        )

    def validate_config(self, config: str) -> None:
        return None


class Mutator(exports.Mutator):
    def mutate(self, config: str, run: Run, job: str):
        try:
            changed = Job.from_text(job)
            if not place(config_object(config), RunView.from_resource(run), changed):
                return Mutation_Job(job)
            return Mutation_Job(changed.to_text())
        except Refused as refused:
            raise Err(refusal(refused))
