"""my-plugin (router): the policy, in plain Python, so `test_policy.py` runs
it natively with pytest. `app.py` connects it to Weir.

Runs that carry the tag `tag` go to the pool `pool` (and the queue `queue`,
if set); others keep the pool and queue they have.

Config: {"tag": "gpu", "pool": "gpu", "queue": "default"} (`queue` optional).
"""
from typing import Optional

from weir_plugin import RunView

# The JSON Schema of the config: the host checks a binding's config against
# it (naming the key that is wrong) before the plugin sees it.
SCHEMA = {
    "type": "object",
    "required": ["tag", "pool"],
    "properties": {
        "tag": {"type": "string", "minLength": 1},
        "pool": {"type": "string", "minLength": 1},
        "queue": {"type": "string", "minLength": 1},
    },
    "additionalProperties": False,
}


def route(config: dict, run: RunView) -> Optional[tuple[str, Optional[str]]]:
    """(pool, queue or None) for a run to send elsewhere; None to leave it."""
    if not run.has_tag(config["tag"]):
        return None
    return config["pool"], config.get("queue")
