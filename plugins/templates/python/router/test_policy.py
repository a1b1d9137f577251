"""The policy, natively: `python3 -m pytest` in this directory."""
import json
from pathlib import Path

from policy import route
from weir_plugin import RunView

HERE = Path(__file__).parent
CONFIG = json.loads((HERE / "config.json").read_text())
# `run.json`: the run `weir plugin test --ctx run.json` gives the plugin.
RUN = RunView.from_json((HERE / "run.json").read_text())


def test_a_tagged_run_goes_to_the_pool():
    assert route(CONFIG, RUN) == ("gpu", None)
    assert route({**CONFIG, "queue": "fast"}, RUN) == ("gpu", "fast")


def test_an_untagged_run_stays_where_it_is():
    assert route(CONFIG, RunView(tags=["cpu"])) is None
