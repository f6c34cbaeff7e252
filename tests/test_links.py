"""Symbolic links in a shipped folder: one that stays inside arrives as the same link; one
that leaves it is refused, naming it, before anything is sent (a link to a key in a dataset
folder arrived as a regular file before); ``follow_links`` ships what it points to. On the
real local host and the real sshd."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpu_magic import GPUJobRequest, JobStatus
from gpu_magic.errors import InvalidRequestError


def dataset(cwd: Path, outside: Path) -> Path:
    data = cwd / "data"
    (data / "run-2").mkdir(parents=True)
    (data / "a.txt").write_text("a")
    (data / "run-2" / "w.txt").write_text("w")
    os.symlink("a.txt", data / "latest")  # inside: a file
    os.symlink("run-2", data / "current")  # inside: a folder
    outside.write_text("PRIVATE KEY")
    os.symlink(outside, data / "key")  # out of the folder
    return data


def test_links_inside_arrive_as_links_and_one_out_is_refused(process_env, tmp_path):
    client, cluster, cwd = process_env.client, process_env.cluster_name, process_env.cwd
    data = dataset(cwd, tmp_path / "id_ed25519")
    request = GPUJobRequest.create(code="pass", cluster=cluster, files=("data",))
    with pytest.raises(InvalidRequestError, match=r"data/key is a link to .*id_ed25519"):
        client.submit(request, cwd=cwd)
    assert client.store.list() == []  # refused before anything was sent
    (data / "key").unlink()
    code = "print(open('data/latest').read(), open('data/current/w.txt').read())"
    request = GPUJobRequest.create(code=code, cluster=cluster, files=("data",))
    job = client.submit(request, cwd=cwd).wait(60).job
    assert job.status == JobStatus.COMPLETED, job.reason
    shipped = Path(job.remote_dir) / "code" / "data"
    assert os.readlink(shipped / "latest") == "a.txt"
    assert os.readlink(shipped / "current") == "run-2"
    assert "a w" in client.logs(job.id)


def test_follow_links_ships_what_they_point_to(process_env, tmp_path):
    client, cluster, cwd = process_env.client, process_env.cluster_name, process_env.cwd
    dataset(cwd, tmp_path / "token")
    request = GPUJobRequest.create(code="pass", cluster=cluster, files=("data",), follow_links=True)
    job = client.submit(request, cwd=cwd).wait(60).job
    key = Path(job.remote_dir) / "code" / "data" / "key"
    assert not key.is_symlink() and key.read_text() == "PRIVATE KEY"
