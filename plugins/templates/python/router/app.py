"""my-plugin (router) as a WebAssembly component (weir:plugin@0.2.0): the
exports Weir calls. The policy is in `policy.py`."""
import json

from policy import SCHEMA, route
from weir_plugin import Refused, RunView, config_object, refusal
from wit_world import exports
from wit_world.imports import log
from wit_world.imports.types import Description, Route
from componentize_py_types import Err


class Plugin(exports.Plugin):
    def describe(self) -> Description:
        return Description(
            name="my-plugin",
            version="0.1.0",
            summary="sends tagged runs to a pool",
            config_schema=json.dumps(SCHEMA),
        )

    def validate_config(self, config: str) -> None:
        # The host has checked the schema; check here what it cannot say.
        return None


class Router(exports.Router):
    def route(self, config: str, run) -> Route:
        try:
            chosen = route(config_object(config), RunView.from_resource(run))
        except Refused as refused:
            # A refusal to decide: the binding's on-error policy applies.
            raise Err(refusal(refused))
        if chosen is None:
            return Route(pool=None, queue=None, add_tags=[])
        pool, queue = chosen
        log.log(log.Level.INFO, "routed", [("pool", pool), ("queue", queue or "")])
        return Route(pool=pool, queue=queue, add_tags=[])
