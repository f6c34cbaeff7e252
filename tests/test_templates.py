"""Job templates: inheritance, the order of layers (flags over the template chain over the
cluster's defaults), templates that cannot work refused in one line when read, ``%gpu_template``
list/show/save/delete, and a templated cell run on local, ssh and slurm."""

from __future__ import annotations

import pytest
import tomli_w
from harness.clients import local_settings
from IPython.core.error import UsageError

from gpu_magic import Client, JobStatus
from gpu_magic.errors import ConfigError
from gpu_magic.resources import SlurmDefaults, effective
from gpu_magic.submit_options import SubmitOptions

pytestmark = pytest.mark.timeout(180)

BASE = {"cluster": "hpc", "gpus": 1, "env": {"A": "base", "B": "base"}, "files": ["data/"]}
A100 = {"extends": "base", "gpus": 4, "partition": "a100", "env": {"B": "a100"}}
LONG = {"extends": "a100", "time": "12:00:00", "files": ["weights/"], "sbatch": {"exclusive": ""}}


@pytest.fixture
def client(tmp_path):
    client = Client(local_settings(tmp_path))
    yield client
    client.close()


def write(client: Client, **tables) -> None:
    """``[templates.NAME]`` tables straight into the clusters file, as a user would."""
    data = {"templates": {name.replace("_", "-"): table for name, table in tables.items()}}
    client.clusters.path.parent.mkdir(parents=True, exist_ok=True)
    client.clusters.path.write_text(tomli_w.dumps(data))


def test_a_template_starts_from_its_ancestors_and_flags_go_over_it(client):
    write(client, base=BASE, a100=A100, a100_long=LONG)
    templates = client.clusters.templates
    assert templates.chain("a100-long") == ["base", "a100", "a100-long"]
    resolved = templates.options("a100-long")
    assert resolved.given() == {
        "cluster": "hpc",
        "gpus": 4,  # the child's scalar replaces the parent's
        "time": "12:00:00",
        "partition": "a100",
        "env": {"A": "base", "B": "a100"},  # tables merge key by key
        "files": ("data/", "weights/"),  # lists add up, the ancestor's first
        "sbatch": {"exclusive": ""},
    }
    flags = SubmitOptions(gpus=2, env={"B": "flag"}, files=("data/", "extra.py"))
    request = flags.over(resolved).request("pass", template="a100-long")
    assert request.gpus == 2 and request.env == {"A": "base", "B": "flag"}
    assert request.files == ("data/", "weights/", "extra.py")  # no repeats
    assert request.resources.time == "12:00:00" and request.resources.partition == "a100"
    assert request.template == "a100-long" and request.cluster == "hpc"
    assert SubmitOptions(gpus=0).over(resolved).request("pass").gpus == 0  # 0 is a value


def test_the_template_goes_over_the_clusters_defaults_and_flags_over_both(client):
    write(client, base=BASE, a100=A100, a100_long=LONG)
    defaults = SlurmDefaults(time="00:30:00", partition="debug", account="lab", qos="normal")
    templated = client.clusters.templates.options("a100-long")
    request = SubmitOptions(qos="high").over(templated).request("pass")
    resources = effective(request.resources, defaults, request.timeout)
    assert resources.time == "12:00:00" and resources.partition == "a100"  # the template's
    assert resources.account == "lab"  # the cluster's, where no layer above says otherwise
    assert resources.qos == "high"  # the flag's


@pytest.mark.parametrize(
    ("tables", "said"),
    [
        ({"a": {"extends": "b"}, "b": {"extends": "a"}}, "'extends' makes a loop (a -> b -> a)"),
        ({"a": {"extends": "gone"}}, "unknown template 'gone' (extended by 'a'); known: a"),
        ({"a": {"gpu": 4}}, "template 'a': gpu: Extra inputs are not permitted"),
        ({"a": {"time": "soon"}}, "template 'a': resources.time:"),
        ({"a": {"gpus": "many"}}, "template 'a': gpus: Input should be a valid integer"),
        ({"a": {"outputs": ["model"]}}, "template 'a': 'outputs' belongs to a cell"),
        ({"a": {"git": "not a url"}}, "template 'a': git: url: not a git URL"),
    ],
)
def test_a_template_that_cannot_work_is_refused_in_one_line_when_read(client, tables, said):
    write(client, **tables)
    with pytest.raises(ConfigError) as refused:
        client.clusters.templates.options("a")
    assert said in str(refused.value)
    assert "\n" not in str(refused.value)


def shell_over(client: Client):
    """The test IPython with our submit and template magics over ``client``."""
    from IPython.testing.globalipapp import get_ipython

    from gpu_magic.magics import GPUMagics
    from gpu_magic.template_magics import TemplateMagics

    ip = get_ipython()
    for magics in (GPUMagics, TemplateMagics):
        ip.register_magics(magics(ip, client=client))
    return ip


@pytest.fixture
def shell(client):
    return shell_over(client)


@pytest.mark.processes
def test_gpu_template_lists_shows_saves_and_deletes(shell, client, tmp_path, capsys, monkeypatch):
    on_local = {k: v for k, v in A100.items() if k != "partition"}  # Slurm's alone
    write(client, base={**BASE, "cluster": "local"}, a100=on_local)
    (tmp_path / "notebook" / "data").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "notebook")
    shell.run_line_magic("gpu_template", "list")
    listed = capsys.readouterr().out
    assert "2 template(s)" in listed and "a100  extends base; gpus=4, env={B=a100}" in listed
    shell.run_line_magic("gpu_template", "show a100")
    shown = capsys.readouterr().out
    assert "template a100 (a100 <- base)" in shown
    assert "gpus     4  (a100)" in shown and "cluster  local  (base)" in shown
    assert "env      {A=base, B=a100}  (base+a100)" in shown
    handle = shell.run_cell_magic(
        "gpu_submit", "--template a100 --gpus 0 --env C=3 --name exp --outputs y", "y = 1"
    )
    assert handle.wait(60).job.status == JobStatus.COMPLETED
    shell.run_line_magic("gpu_template", "save mine --extends base")
    assert "saved from job" in capsys.readouterr().out
    mine = client.clusters.templates.tables()["mine"]
    own = {"extends": "base", "gpus": 0, "env": {"B": "a100", "C": "3"}}
    assert mine == own  # what differs from base only; not the cell's name or outputs
    with pytest.raises(UsageError, match="template 'mine' exists; --force replaces it"):
        shell.run_line_magic("gpu_template", "save mine")
    shell.run_line_magic("gpu_template", "delete mine")
    assert "mine" not in client.clusters.templates.names()
    with pytest.raises(UsageError, match="unknown template 'nope'; known: a100, base"):
        shell.run_cell_magic("gpu_submit", "--template nope", "pass")


def test_a_templated_cell_runs_with_the_templates_files_and_env(env):
    (env.cwd / "data").mkdir()
    (env.cwd / "data" / "rows.txt").write_text("shipped by the template\n")
    base = {"cluster": env.cluster_name, "files": ["data"], "env": {"A": "base", "B": "base"}}
    env.client.clusters.templates.save("base", SubmitOptions(**base))
    child = SubmitOptions(env={"B": "child"}, timeout=300)
    env.client.clusters.templates.save("child", child, extends="base")
    ip = shell_over(env.client)
    cell = "import os\nprint(os.environ['A'], os.environ['B'], open('data/rows.txt').read())"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(env.cwd)
        handle = ip.run_cell_magic("gpu_submit", "--template child --env B=flag", cell)
    job = handle.wait(120).job
    assert job.status == JobStatus.COMPLETED, job.reason
    assert env.client.logs(job.id).split() == ["base", "flag", "shipped", "by", "the", "template"]
    assert job.request.template == "child" and job.request.timeout == 300
