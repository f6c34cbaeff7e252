"""Smaller holes, each refused up front with one line or shown harmlessly: a private key
others can read, ``@cert-authority``/``@revoked`` known_hosts lines (a bare "Incorrect
padding" before), a newline in a shipped file's name or in a result's name, a base path that
a command would take for an option."""

from __future__ import annotations

import shutil

import pytest

from gpu_magic import Client, GPUJobRequest, JobStatus
from gpu_magic.clusters import make_cluster
from gpu_magic.errors import (
    AuthenticationError,
    ChangedHostKeyError,
    ConfigError,
    InvalidRequestError,
    UnknownHostKeyError,
)
from gpu_magic.formatting import files_table


def run_on(ssh_env, **changes):
    ssh_env.transport(ssh_env.cluster.model_copy(update=changes)).run("true").check()


def test_a_key_others_can_read_is_refused_like_ssh_refuses_it(ssh_env, tmp_path):
    key = tmp_path / "shared_key"
    shutil.copy(ssh_env.server.client_key, key)
    key.chmod(0o644)
    with pytest.raises(
        AuthenticationError, match=r"can be read by others \(mode 0644\).*chmod 600"
    ):
        run_on(ssh_env, key=str(key))
    key.chmod(0o600)
    run_on(ssh_env, key=str(key))  # the same key, private again: it works


def test_cert_authority_and_revoked_lines_are_understood(ssh_env):
    known = ssh_env.settings.known_hosts_path
    host_line = ssh_env.server.known_hosts_line()
    some_key = " ".join(ssh_env.server.client_key.with_suffix(".pub").read_text().split()[:2])
    ca = f"@cert-authority *.example {some_key}"
    known.write_text(f"{ca}\n{host_line}\n")
    run_on(ssh_env)  # the CA line no longer breaks the file
    known.write_text(f"{ca}\n")
    with pytest.raises(UnknownHostKeyError, match="@cert-authority lines"):
        run_on(ssh_env)
    host_key = host_line.split(None, 1)[1]
    known.write_text(f"@revoked * {host_key}\n{host_line}\n")  # listed, and revoked
    with pytest.raises(ChangedHostKeyError, match="REVOKED"):
        run_on(ssh_env)


def test_a_newline_in_a_shipped_name_is_refused_before_anything_is_sent(tmp_path):
    from harness.clients import local_settings

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "two\nlines.txt").write_text("x")
    client = Client(local_settings(tmp_path))
    try:
        request = GPUJobRequest.create(code="pass", cluster="local", files=("data",))
        with pytest.raises(InvalidRequestError, match=r"'data/two\\nlines.txt' has a control"):
            client.submit(request, cwd=tmp_path)
        assert client.store.list() == []
    finally:
        client.close()


@pytest.mark.processes
def test_a_result_named_with_a_newline_cannot_forge_rows(tmp_path):
    from harness.clients import local_settings

    client = Client(local_settings(tmp_path))
    try:
        code = "open('outputs/a\\nmodel.pt  model  1 GB  yes', 'w').write('x')"
        job = client.submit(GPUJobRequest.create(code=code, cluster="local")).wait(60)
        assert job.status == JobStatus.COMPLETED
        shown = files_table(job.files())
        assert "outputs/a\\nmodel.pt" in shown
        assert len(shown.splitlines()) == 2 + len(job.files())  # header, rule, one per file
    finally:
        client.close()


@pytest.mark.parametrize("path", ["-rf", "jobs", "~nobody/x", "/tmp/a\nb"])
def test_a_base_path_must_be_absolute_or_home(path):
    with pytest.raises(ConfigError, match="base_path"):
        make_cluster(name="x", host="h", base_path=path)


def test_a_logs_escapes_are_harmless_when_printed_and_colours_stay():
    from gpu_magic.parsers.events import terminal_safe

    hostile = (
        "\x1b]0;pwned title\x07\x1b]8;;http://evil.example\x1b\\click\x1b]8;;\x1b\\"
        "\x1b[2J\x1b[H\x1b[31mred\x1b[0m\tok\r\nbell\x07\x00end"
    )
    assert terminal_safe(hostile) == "click\x1b[31mred\x1b[0m\tok\r\nbellend"


def test_a_metric_name_is_text_in_the_legend():
    from gpu_magic.ui import charts

    fig = charts.metrics_figure()
    charts.update_metrics(fig, {"<b>loss</b><a href='x'>": [(1, 0.5)], "loss": [(1, 0.4)]})
    charts.update_metrics(fig, {"<b>loss</b><a href='x'>": [(2, 0.3)]})  # found again
    names = [t.name for t in fig.data]
    assert names == ["&lt;b&gt;loss&lt;/b&gt;&lt;a href='x'&gt;", "loss"]
    assert list(fig.data[0].y) == [0.3]  # the same trace, not a second one


@pytest.mark.processes
def test_a_job_cannot_fill_the_local_disk(tmp_path, monkeypatch):
    """Files bigger than the default fetch limit are listed, not fetched; and what does not
    fit on the disk (a 4 MB tmpfs here) is not fetched either, saying why."""
    import subprocess

    from harness.clients import local_settings

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small)]).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        settings = local_settings(tmp_path).model_copy(
            update={"gpu_magic_results_dir": small, "gpu_magic_fetch_limit": 5_000_000}
        )
        client = Client(settings)
        try:
            from gpu_magic.results import collector

            monkeypatch.setattr(collector, "SPARE_BYTES", 0)  # the tmpfs is the whole disk
            code = (
                "open('outputs/huge.bin', 'wb').write(b'x' * 6_000_000)\n"  # over the limit
                "open('outputs/big.bin', 'wb').write(b'x' * 4_500_000)\n"  # under, but no room
                "y = 1\n"
            )
            request = GPUJobRequest.create(code=code, cluster="local", outputs=("y",))
            job = client.submit(request).wait(60)
            assert job.fetch() == {"y": 1}  # the essentials came
            fetched = {f["path"]: f["fetched"] for f in job.files()}
            assert fetched["outputs/huge.bin"] is False and fetched["outputs/big.bin"] is False
            assert "were not fetched: they need more than" in client.results.errors[job.id]
        finally:
            client.close()
    finally:
        subprocess.run(["umount", "-l", str(small)])


def test_a_bad_git_source_and_an_unknown_users_home_are_one_line_each(tmp_path):
    from gpu_magic.models import GitSource
    from gpu_magic.packaging.files import collect_files

    with pytest.raises(InvalidRequestError, match="--git: .*not a git URL") as info:
        GitSource.parse("not a url")
    assert "\n" not in str(info.value)
    with pytest.raises(InvalidRequestError, match="no such user's home folder"):
        collect_files(("~nobody-at-all-here/x",), tmp_path)
