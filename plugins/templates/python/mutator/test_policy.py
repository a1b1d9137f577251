"""The policy, natively: `python3 -m pytest` in this directory."""
import json
from pathlib import Path

import pytest

from policy import mutate
from weir_plugin import Job, Refused, RunView

HERE = Path(__file__).parent
CONFIG = json.loads((HERE / "config.json").read_text())
# `run.json` and `job.json`: what `weir plugin test --ctx run.json --job
# job.json` gives the plugin.
RUN = RunView.from_json((HERE / "run.json").read_text())
JOB = (HERE / "job.json").read_text()


def test_every_container_gets_the_variables():
    job = Job.from_text(JOB)
    mutate(CONFIG, RUN, job)
    for container in job.containers():
        assert {"name": "GREETING", "value": "hello"} in container["env"]


def test_a_process_job_gets_them_too():
    job = Job({"command": ["echo", "hi"], "env": {"GREETING": "bye", "KEEP": "1"}})
    mutate(CONFIG, RUN, job)
    assert job.doc["env"] == {"GREETING": "hello", "KEEP": "1"}


def test_a_broken_env_is_refused():
    job = Job({"command": ["true"], "env": ["not", "an", "object"]})
    with pytest.raises(Refused) as refused:
        mutate(CONFIG, RUN, job)
    assert refused.value.code == "bad-job"
