"""The job-folder names the remote side needs.

A copy of the few constants of ``gpu_magic.jobdir`` that the runner uses: the shipped ``lib/``
holds only ``gpu_magic/remote/``, so ``jobdir`` cannot be imported on the host. A test keeps the
two in step.
"""

SPEC = "spec.json"
CODE = "code"
INPUTS = "inputs"
OUTPUTS = "outputs"
STATE = "state"
ERROR_JSON = "error.json"
PICKLE_SUFFIX = ".pkl"
PYTHON_MAIN = "main.py"
