"""Hostile strings in the fields a user controls, over the real local host and the real sshd:
every value either reaches the job verbatim or is refused up front with one clear line; a
canary file that any injection would create never appears.

Each example is one real job carrying up to twelve values at once (``--env`` values and
``--args``, the fields that reach a shell on the host): about a hundred values per field and
host in CI; ``bench/`` is the place for more. Names that must be identifiers (``--env``
names, job names, cluster names) are checked for one-line refusals without a job."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpu_magic import GPUJobRequest, JobStatus
from gpu_magic.clusters import make_cluster
from gpu_magic.errors import ConfigError, InvalidRequestError

CANARY = "/tmp/gpu_magic-injection-canary"
ATTACKS = [
    f"; touch {CANARY}", f"$(touch {CANARY})", f"`touch {CANARY}`", f"&& touch {CANARY}",
    f"| touch {CANARY}", f"'; touch {CANARY}; '", f'"; touch {CANARY}; "', "\n", "\r\n",
    "-rf", "--help", "$HOME", "${PATH}", "'", '"', "\\", "*", "~", "%s%n", "é✓🚀", "\t",
    "' \"$(id)\" '", "x" * 5000,
]  # fmt: skip
hostile = st.lists(
    st.one_of(st.sampled_from(ATTACKS), st.text(min_size=1, max_size=40)),
    min_size=1,
    max_size=4,
).map("".join)

ECHO = """
import json, os, sys
json.dump({"env": {k: v for k, v in os.environ.items() if k.startswith("H_")},
           "args": sys.argv[1:]}, open("outputs/seen.json", "w"))
"""


@pytest.fixture(autouse=True)
def no_canary():
    if os.path.exists(CANARY):
        os.unlink(CANARY)
    yield
    assert not os.path.exists(CANARY), "a hostile value was run as a command"


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(values=st.lists(hostile, min_size=1, max_size=12))
def test_env_values_and_args_arrive_verbatim_or_are_refused(process_env, values):
    client, cluster = process_env.client, process_env.cluster_name
    env = {f"H_{i}": value for i, value in enumerate(values)}
    try:
        request = GPUJobRequest.create(
            code=ECHO, cluster=cluster, env=env, args=tuple(values), outputs=()
        )
    except InvalidRequestError as exc:
        assert "\n" not in str(exc) and any("\0" in v for v in values)
        return
    job = client.submit(request).wait(120).job
    assert job.status == JobStatus.COMPLETED, job.reason
    seen = client.results.load(job.id, "seen.json")
    assert seen == {"env": env, "args": list(values)}


@settings(max_examples=300, deadline=None)
@given(name=hostile)
def test_names_that_must_be_identifiers_are_refused_in_one_line(name):
    for build in (
        lambda: GPUJobRequest.create(code="x", env={name: "v"}),
        lambda: GPUJobRequest.create(code="x", name=name),
    ):
        try:
            build()
        except InvalidRequestError as exc:
            assert "\n" not in str(exc)  # one line, the hostile name shown escaped
    with pytest.raises(ConfigError):
        make_cluster(name="x", host="h", base_path="-" + name)
