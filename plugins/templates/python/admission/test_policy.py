"""The policy, natively: `python3 -m pytest` in this directory."""
import json
from pathlib import Path

import pytest

from policy import admit
from weir_plugin import Refused, RunView

HERE = Path(__file__).parent
CONFIG = json.loads((HERE / "config.json").read_text())
# `run.json` and `stats.json`: what `weir plugin test --ctx run.json --stats
# stats.json` gives the plugin.
RUN = RunView.from_json((HERE / "run.json").read_text())
STATS = json.loads((HERE / "stats.json").read_text())


def running(key: str, value: str) -> int:
    return STATS["labels"].get(key, {}).get(value, {}).get("running", 0)


def test_a_team_at_its_limit_waits():
    assert admit(CONFIG, RUN, running) == (30, "team a has 2 runs running (at most 2)")


def test_a_team_under_its_limit_is_admitted():
    assert admit({**CONFIG, "max_running_per_team": 3}, RUN, running) is None


def test_a_run_without_a_team_is_rejected():
    with pytest.raises(Refused) as refused:
        admit(CONFIG, RunView(labels={}), running)
    assert refused.value.code == "missing-team"
