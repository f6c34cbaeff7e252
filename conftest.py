"""Keep every test run (unit tests and nbval notebooks) away from the user's real gpu_magic dirs."""

import os
import tempfile


def pytest_configure(config):
    if os.environ.get("GPU_MAGIC_TEST_ISOLATED"):
        return
    root = tempfile.mkdtemp(prefix="gpu_magic-test-")
    os.environ.update(
        GPU_MAGIC_TEST_ISOLATED=root,
        GPU_MAGIC_CONFIG_DIR=os.path.join(root, "config"),
        GPU_MAGIC_DATA_DIR=os.path.join(root, "data"),
        GPU_CLUSTER_BASE_PATH=os.path.join(root, "jobs"),
    )
    for name in ("GPU_CLUSTER_HOST", "GPU_CLUSTER_USERNAME", "GPU_CLUSTER_KEY_PATH"):
        os.environ.pop(name, None)
