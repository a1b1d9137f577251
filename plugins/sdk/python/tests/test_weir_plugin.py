"""The SDK's helpers, natively (no component): `pytest plugins/sdk/python`."""
from fractions import Fraction

import pytest

from weir_plugin import Job, Refused, RunView, config_object, quantity, resources, short


def test_refused_checks_its_code_and_details():
    r = Refused("quota-exceeded", "team a is full", {"team": "a"})
    assert (r.code, r.message, r.details) == ("quota-exceeded", "team a is full", {"team": "a"})
    assert str(r) == "[quota-exceeded] team a is full"
    for bad in ["", "Upper", "sp ace", "x" * 65, "under_score"]:
        with pytest.raises(ValueError, match="refusal code"):
            Refused(bad, "m")
    with pytest.raises(ValueError, match="details"):
        Refused("c", "m", ["not", "an", "object"])


def test_short_writes_json_as_the_rust_sdk_does():
    assert short(["a", 1]) == '["a",1]'
    assert short({"b": 1, "a": [True, None]}) == '{"a":[true,null],"b":1}'
    assert short("é") == '"é"'
    long = short("x" * 100)
    assert len(long) == 60 and long.endswith("...")


def test_config_object():
    assert config_object("") == {}
    assert config_object('{"max": 3}') == {"max": 3}
    with pytest.raises(Refused) as e:
        config_object("[1]")
    assert e.value.code == "bad-config" and "[1]" in e.value.message


def test_a_setting_comes_from_the_job_variable_first():
    run = RunView(parameters={"gpus": 2, "gpu": None}, job_variables={"gpus": "3"}, tags=["gpu"])
    assert run.setting("gpus") == ("job variable", "3")
    assert run.setting("gpu") is None
    assert RunView(parameters={"gpu": True}).setting("gpu") == ("parameter", True)
    assert run.has_tag("gpu") and not run.has_tag("cpu")


def test_job_helpers_reach_the_pod_spec_and_create_resources():
    job = Job.from_text(
        '{"job_manifest": {"spec": {"template": {"spec": {"containers": ['
        '{"name": "a"}, {"name": "b", "resources": {"requests": {"cpu": "1"}}}]}}}}}'
    )
    assert job.is_kubernetes
    names = [c["name"] for c in job.containers()]
    assert names == ["a", "b"]
    for c in job.containers():
        resources(c, "limits")["nvidia.com/gpu"] = "1"
    spec = job.pod_spec()
    assert spec["containers"][0]["resources"] == {"limits": {"nvidia.com/gpu": "1"}}
    assert spec["containers"][1]["resources"]["requests"] == {"cpu": "1"}
    process = Job({"command": ["true"], "env": {}})
    assert not process.is_kubernetes and process.pod_spec() is None
    assert list(process.containers()) == []
    broken = Job({"job_manifest": {"spec": {"template": {"spec": {"containers": [{"name": "c", "resources": []}]}}}}})
    with pytest.raises(Refused, match="container `c`: resources is not an object"):
        resources(next(broken.containers()), "limits")
    with pytest.raises(Refused):
        Job([1])


def test_quantities_are_exact():
    assert quantity("500m") == Fraction(1, 2)
    assert quantity("2Gi") == 2 * 2**30
    assert quantity("1.5") == Fraction(3, 2)
    assert quantity("1e3") == 1000
    assert quantity("128Mi") == 128 * 2**20
    assert quantity("4k") == 4000
    assert quantity(" 2 ") == 2
    for bad in ["", "1.2.3", "5 Gi", "Gi", "1x"]:
        with pytest.raises(ValueError, match="not a Kubernetes quantity"):
            quantity(bad)
    with pytest.raises(ValueError, match="is a string"):
        quantity(3)


def test_a_run_context_file_reads_as_the_plugin_sees_it():
    run = RunView.from_json(
        '{"run_id": "r1", "pool": "p", "queue": "q", "tags": ["gpu"], "labels": {"team": "a"},'
        ' "parameters": {"n": 1}, "job_variables": {"image": "x"}, "deployment": null}'
    )
    assert (run.id, run.pool, run.queue, run.tags) == ("r1", "p", "q", ["gpu"])
    assert run.labels == {"team": "a"} and run.parameter("n") == 1
    assert run.job_variable("image") == "x" and run.deployment is None
    assert RunView.from_json("{}") == RunView()
    with pytest.raises(ValueError, match="JSON object"):
        RunView.from_json("[]")


def test_from_resource_reads_every_getter_once_the_pool_type_among_them():
    from enum import Enum

    class PoolType(Enum):  # as componentize-py generates a WIT enum
        PROCESS = 0
        KUBERNETES = 1

    calls = []

    def getter(name, value):
        def get():
            calls.append(name)
            return value

        return get

    class Run:
        id = staticmethod(getter("id", "r1"))
        pool = staticmethod(getter("pool", "gpu"))
        pool_type = staticmethod(getter("pool_type", PoolType.KUBERNETES))
        queue = staticmethod(getter("queue", "default"))
        tags = staticmethod(getter("tags", ["gpu"]))
        labels = staticmethod(getter("labels", [("team", "a")]))
        parameters = staticmethod(getter("parameters", '{"n": 1}'))
        job_variables = staticmethod(getter("job_variables", "{}"))
        deployment = staticmethod(getter("deployment", None))
        parent_run = staticmethod(getter("parent_run", None))

    view = RunView.from_resource(Run())
    assert view.pool_type == "kubernetes"
    assert view.labels == {"team": "a"}
    assert view.parameters == {"n": 1}
    assert len(calls) == len(set(calls))
    assert RunView.from_json('{"pool_type": "process"}').pool_type == "process"
    assert RunView().pool_type is None
