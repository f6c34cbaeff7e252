import pytest, time
from test_ssh_transport import *  # noqa

@pytest.mark.parametrize("i", range(60))
def test_loop(ssh_env, dropping_proxy, tmp_path, i):
    proxy = dropping_proxy(drop=0)
    wrong = generate_key(tmp_path / "wrong_key")
    cluster = ssh_env.cluster.model_copy(update={"port": proxy.port, "key": str(wrong)})
    with pytest.raises(AuthenticationError):
        ssh_env.transport(cluster).run("true")
    a1 = proxy.accepted
    ssh_env.settings.known_hosts_path.write_text("")
    cluster = ssh_env.cluster.model_copy(update={"port": proxy.port})
    with pytest.raises(UnknownHostKeyError):
        ssh_env.transport(cluster).run("true")
    a2 = proxy.accepted
    time.sleep(0.2)
    assert (a1, a2) == (1, 2), (a1, a2, proxy.accepted, [t.name for t in threading.enumerate()], proxy.port, ssh_env.server.port)
