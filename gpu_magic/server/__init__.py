"""The Jupyter server extension: gpu_magic's jobs over REST and WebSocket (``/gpu-jobs``).

One screen, like jupyter-resource-usage's hook: the server's own ``Client`` (the same store as
every kernel's), a watch that follows every active job whether or not a kernel does, the
operational figures in the server's ``/metrics``, and the routes. Enabled by ``pip install``
(``etc/jupyter/jupyter_server_config.d/gpu_magic.json``). jupyter_server and tornado are
imported only under this package.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ..api import Client
from .metrics import register_metrics
from .routes import routes
from .watch import ActiveJobsWatch

WORKERS = 8
"""Threads for blocking calls (SSH, SFTP, SQLite): the event loop never waits on a host."""


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": "gpu_magic.server"}]


def _load_jupyter_server_extension(serverapp) -> None:
    client = Client()
    pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="gpu_magic-server")
    watch = ActiveJobsWatch(client)
    settings = serverapp.web_app.settings
    settings.update(
        gpu_magic_client=client,
        gpu_magic_pool=pool,
        gpu_magic_root=serverapp.root_dir,
        gpu_magic_watch=watch,
    )
    serverapp.web_app.add_handlers(".*$", routes(settings["base_url"]))
    register_metrics(client)
    watch.start()
    serverapp.log.info("gpu_magic: /gpu-jobs routes on; following %s", client.settings.store_path)


def _unload_jupyter_server_extension(serverapp) -> None:
    settings = serverapp.web_app.settings
    settings["gpu_magic_watch"].stop()
    settings["gpu_magic_client"].close()
    settings["gpu_magic_pool"].shutdown(wait=False, cancel_futures=True)
