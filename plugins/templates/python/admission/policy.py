"""my-plugin (admission): the policy, in plain Python, so `test_policy.py`
runs it natively with pytest. `app.py` connects it to Weir.

A team may have at most `max_running_per_team` runs holding slots at once:
a run of a team at its limit is deferred (judged again after
`retry_seconds`); a run without a `team` label is rejected.

Config: {"max_running_per_team": 2, "retry_seconds": 30}.
"""
from typing import Callable, Optional

from weir_plugin import Refused, RunView

SCHEMA = {
    "type": "object",
    "required": ["max_running_per_team"],
    "properties": {
        "max_running_per_team": {"type": "integer", "minimum": 1},
        "retry_seconds": {"type": "integer", "minimum": 1, "maximum": 86400},
    },
    "additionalProperties": False,
}

# running(label key, label value) -> how many runs with that label hold slots.
Running = Callable[[str, str], int]


def admit(config: dict, run: RunView, running: Running) -> Optional[tuple[int, str]]:
    """None to admit; (seconds, reason) to defer; raises `Refused` to reject."""
    team = run.labels.get("team")
    if team is None:
        raise Refused("missing-team", "the run has no `team` label", {"labels": run.labels})
    limit = config["max_running_per_team"]
    now = running("team", team)
    if now >= limit:
        return (
            config.get("retry_seconds", 30),
            f"team {team} has {now} runs running (at most {limit})",
        )
    return None
