"""Results from a host are code when they are pickles: from a cluster marked ``trusted =
false``, ``--outputs`` variables and ``.pkl`` files are refused (a ``__reduce__`` payload ran
in the kernel before), unless a load says ``unsafe=True``; plain data formats still load.
Real local host and real sshd."""

from __future__ import annotations

import pytest

from gpu_magic import GPUJobRequest
from gpu_magic.errors import TransferError

PAYLOAD = """
import os, json, pickle
class Evil:
    def __reduce__(self):
        return (os.system, ({touch!r},))
value = Evil()
os.makedirs("outputs", exist_ok=True)
pickle.dump(Evil(), open("outputs/evil.pkl", "wb"))
json.dump({{"ok": 1}}, open("outputs/plain.json", "w"))
"""


@pytest.fixture
def untrusted(process_env):
    client, name = process_env.client, process_env.cluster_name
    config = client.clusters.get(name).model_copy(update={"name": "borrowed", "trusted": False})
    client.clusters.add(config)
    return client


def test_pickles_from_an_untrusted_cluster_are_refused_and_data_still_loads(untrusted, tmp_path):
    canary = tmp_path / "canary"
    code = PAYLOAD.format(touch=f"touch {canary}")
    request = GPUJobRequest.create(code=code, cluster="borrowed", outputs=("value",))
    handle = untrusted.submit(request).wait(60)
    with pytest.raises(TransferError, match="cluster 'borrowed' is not trusted"):
        handle.fetch()
    with pytest.raises(TransferError, match="evil.pkl was not unpickled"):
        handle.load("evil.pkl")
    assert handle.load("plain.json") == {"ok": 1}
    assert not canary.exists()  # nothing from the host ran here
    handle.load("evil.pkl", unsafe=True)  # the user vouches for it: it is code, and it runs
    assert canary.exists()


def test_a_trusted_cluster_unpickles_as_before(process_env):
    client, cluster = process_env.client, process_env.cluster_name
    request = GPUJobRequest.create(code="y = {'a': 1}", cluster=cluster, outputs=("y",))
    assert client.submit(request).wait(60).fetch() == {"y": {"a": 1}}
    assert client.clusters.get(cluster).trusted  # the default: your own hosts
