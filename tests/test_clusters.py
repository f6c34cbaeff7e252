"""Settings from the environment, the clusters file, and which cluster is the default."""

import pytest

from gpu_magic import GPUJob, GPUJobRequest, Settings, formatting
from gpu_magic.clusters import ClusterRegistry, make_cluster
from gpu_magic.errors import ConfigError, UnknownClusterError


@pytest.fixture
def settings(tmp_path, monkeypatch):
    for var in ("GPU_CLUSTER_HOST", "GPU_CLUSTER_USERNAME", "GPU_CLUSTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GPU_MAGIC_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.chdir(tmp_path)
    return Settings


def test_plan_field_names_come_from_the_environment(settings, monkeypatch):
    monkeypatch.setenv("GPU_CLUSTER_HOST", "gpu-box")
    monkeypatch.setenv("GPU_CLUSTER_USERNAME", "alice")
    monkeypatch.setenv("GPU_CLUSTER_PORT", "2222")
    monkeypatch.setenv("MAX_CONCURRENT_JOBS", "4")
    monkeypatch.setenv("SSH_CONNECTION_TIMEOUT", "5")
    s = settings()
    assert (s.gpu_cluster_host, s.gpu_cluster_username, s.gpu_cluster_port) == (
        "gpu-box",
        "alice",
        2222,
    )
    assert (s.max_concurrent_jobs, s.ssh_connection_timeout) == (4, 5)
    assert s.file_transfer_timeout == 3600


def test_dotenv_file_sets_harmless_settings_only(settings, tmp_path):
    (tmp_path / ".env").write_text("GPU_CLUSTER_HOST=from-dotenv\nJOB_MONITORING_INTERVAL=7\n")
    s = settings()
    assert s.gpu_cluster_host is None  # where to connect: never from the working directory
    assert s.job_monitoring_interval == 7


def test_local_is_the_default_with_nothing_configured(settings):
    registry = ClusterRegistry(settings())
    assert registry.default_name() == "local"
    assert registry.get().is_local


def test_gpu_cluster_host_defines_the_default_cluster(settings, monkeypatch):
    monkeypatch.setenv("GPU_CLUSTER_HOST", "gpu-box")
    monkeypatch.setenv("GPU_CLUSTER_USERNAME", "alice")
    cluster = ClusterRegistry(settings()).get()
    assert (cluster.name, cluster.host, cluster.user) == ("default", "gpu-box", "alice")


def test_add_use_remove_persist_in_toml(settings):
    registry = ClusterRegistry(settings())
    registry.add(make_cluster(name="hpc", host="login.hpc", port=2222, user="bob"))
    registry.use("hpc")
    again = ClusterRegistry(settings())
    assert again.default_name() == "hpc"
    assert again.get().port == 2222
    assert 'host = "login.hpc"' in again.path.read_text()
    again.remove("hpc")
    assert ClusterRegistry(settings()).default_name() == "local"


def test_a_jobs_scheduler_id_is_named_by_its_clusters_scheduler(settings):
    registry = ClusterRegistry(settings())
    registry.add(make_cluster(name="hpc", host="login.hpc", scheduler="slurm"))
    request = GPUJobRequest.create(code="pass", cluster="hpc")
    job = GPUJob(id="j", request=request, cluster="hpc", remote_dir="/j", scheduler_id="4711")

    def named(cluster):
        details = formatting.job_details(job, [], registry.scheduler_of(cluster))
        return next(line for line in details.splitlines() if line.endswith(" 4711"))

    assert named("hpc").startswith("slurm job ")
    assert named("local").startswith("process ")
    registry.remove("hpc")  # its jobs stay in the store; what their id was is no longer known
    assert named("hpc").startswith("host id ")


def test_unknown_cluster_lists_the_known_ones(settings):
    with pytest.raises(UnknownClusterError, match="unknown cluster 'nope'; known clusters: local"):
        ClusterRegistry(settings()).get("nope")


@pytest.mark.parametrize(
    "fields",
    [
        {"name": "x", "host": "h; rm -rf /"},
        {"name": "x", "host": "-oProxyCommand=evil"},
        {"name": "x", "host": "h", "user": "$(id)"},
        {"name": "../x", "host": "h"},
        {"name": "x", "host": "h", "port": 0},
    ],
)
def test_cluster_fields_reject_injection(fields):
    with pytest.raises(ConfigError):
        make_cluster(**fields)


def test_local_cannot_be_redefined(settings):
    with pytest.raises(ConfigError, match="built in"):
        ClusterRegistry(settings()).add(make_cluster(name="local", host="h"))


def test_corrupt_clusters_file_is_a_clear_error(settings, tmp_path):
    path = tmp_path / "config" / "clusters.toml"
    path.parent.mkdir(parents=True)
    path.write_text("[clusters.x\nhost=")
    with pytest.raises(ConfigError, match="cannot read clusters file"):
        ClusterRegistry(settings()).all()
