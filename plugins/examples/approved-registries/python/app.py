"""`approved-registries` in Python (weir:plugin@0.2.0): the same policy as
the Rust example next to it (`../src/lib.rs`), the same decisions and the
same reasons. Admits a run whose `image` job variable starts with an
approved prefix, or that has none; rejects any other with the code
`unapproved-registry`, the image and the prefixes.

Config: {"prefixes": ["registry.example.com/", "ghcr.io/acme/"]}; its JSON
Schema (below) is checked by the host before `validate_config` is called.
"""
import json

from weir_plugin import Refused, RunView, config_object, refusal, short
from wit_world import exports
from wit_world.imports import log
from wit_world.imports.types import Admission_Admit, Admission_Reject, Description, Run

SCHEMA = {
    "type": "object",
    "required": ["prefixes"],
    "properties": {
        "prefixes": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "minLength": 1},
        }
    },
    "additionalProperties": False,
}


def judge(config: dict, run: RunView) -> None:
    """Returns if the run is admitted; raises `Refused` if it is not."""
    prefixes = config["prefixes"]
    image = run.job_variable("image")
    if image is None:
        return
    if not isinstance(image, str):
        raise Refused("bad-image", f"job variable `image` must be a string, got {short(image)}")
    if any(image.startswith(p) for p in prefixes):
        return
    log.log(log.Level.INFO, "image from an unapproved registry", [("image", image)])
    raise Refused(
        "unapproved-registry",
        f"image {json.dumps(image, ensure_ascii=False)} is not from an approved registry; "
        f"allowed prefixes: {', '.join(prefixes)}",
        {"image": image, "prefixes": prefixes},
    )


class Plugin(exports.Plugin):
    def describe(self) -> Description:
        return Description(
            name="approved-registries",
            version="1.0.0",
            summary="admits only runs whose image comes from an approved registry",
            config_schema=json.dumps(SCHEMA),
        )

    def validate_config(self, config: str) -> None:
        # The host has checked the schema; nothing more to say.
        return None


class Admission(exports.Admission):
    def admit(self, config: str, run: Run):
        try:
            judge(config_object(config), RunView.from_resource(run))
        except Refused as refused:
            return Admission_Reject(refusal(refused))
        return Admission_Admit()
