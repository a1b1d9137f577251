"""my-plugin (mutator): the policy, in plain Python, so `test_policy.py`
runs it natively with pytest. `app.py` connects it to Weir.

Sets the environment variables of its config on every container of a
Kubernetes job, or on a process job (replacing ones of the same name).

Config: {"env": {"GREETING": "hello"}}.
"""
from weir_plugin import Job, Refused, RunView, entry

SCHEMA = {
    "type": "object",
    "required": ["env"],
    "properties": {
        "env": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}


def mutate(config: dict, run: RunView, job: Job) -> None:
    """Changes `job` in place; raises `Refused` to reject the run."""
    env = config["env"]
    if job.is_kubernetes:
        for container in job.containers():
            have = entry(container, "env", list, f"container `{container.get('name', '')}`: env")
            for name, value in env.items():
                have[:] = [e for e in have if not (isinstance(e, dict) and e.get("name") == name)]
                have.append({"name": name, "value": value})
    else:
        entry(job.doc, "env", dict, "the process job's env").update(env)
