"""Hostile strings in the fields a user controls, over the real local host and the real sshd:
every value either reaches the job verbatim or is refused up front with one clear line; a
canary file that any injection would create never appears.

Each example is one real job carrying up to twelve values at once (``--env`` values and
``--args``, ``--secret-env`` values, shipped file names: the fields that reach the host):
about a hundred values per field and host in CI; ``bench/`` is the place for more. The fields
checked before anything runs are ``test_hostile_fields.py``'s. Names that must be identifiers
(``--env`` names, job names, cluster names) are checked for one-line refusals without a job."""

from __future__ import annotations

import hashlib
import os

import pytest
from harness.hostile import CANARY, examples, hostile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpu_magic import GPUJobRequest, JobStatus
from gpu_magic.clusters import make_cluster
from gpu_magic.errors import ConfigError, InvalidRequestError

pytestmark = pytest.mark.processes  # real local jobs or run.sh (harness/tiers.py)

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
    max_examples=examples(15),
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


@settings(max_examples=examples(300), deadline=None)
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


SECRET_CHECK = """
import hashlib, json, os
got = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in os.environ.items()
       if k.startswith("S_")}
json.dump(got, open("outputs/seen.json", "w"))
"""


@settings(
    max_examples=examples(10),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(values=st.lists(hostile.filter(lambda v: "\0" not in v), min_size=1, max_size=8))
def test_secret_env_values_arrive_verbatim(process_env, values):
    names = tuple(f"S_{i}" for i in range(len(values)))
    os.environ.update(zip(names, values, strict=True))
    client, cluster = process_env.client, process_env.cluster_name
    request = GPUJobRequest.create(code=SECRET_CHECK, cluster=cluster, secret_env=names)
    try:
        job = client.submit(request).wait(120).job
    finally:
        for name in names:
            del os.environ[name]
    assert job.status == JobStatus.COMPLETED, job.reason
    hashed = {n: hashlib.sha256(v.encode()).hexdigest() for n, v in zip(names, values, strict=True)}
    assert client.results.load(job.id, "seen.json") == hashed  # compared by hash: no file holds it


LISTING = """
import json, os
json.dump(sorted(os.listdir("shipped")), open("outputs/seen.json", "w"))
"""
file_name = hostile.filter(lambda n: "/" not in n and "\0" not in n and n not in (".", ".."))


@settings(
    max_examples=examples(12),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(names=st.sets(file_name.map(lambda n: n[:200]), min_size=1, max_size=6))
def test_shipped_file_names_arrive_verbatim_or_are_refused(process_env, names, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ship") / "shipped"
    folder.mkdir()
    for name in names:
        (folder / name).write_text(name)
    client, cluster = process_env.client, process_env.cluster_name
    request = GPUJobRequest.create(code=LISTING, cluster=cluster, files=(str(folder),))
    try:
        job = client.submit(request, cwd=folder.parent).wait(120).job
    except InvalidRequestError as exc:
        assert "\n" not in str(exc) and any(not n.isprintable() for n in names)
        return
    assert job.status == JobStatus.COMPLETED, job.reason
    assert client.results.load(job.id, "seen.json") == sorted(names)
