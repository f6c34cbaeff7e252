"""A job's results: reading its folder on the host, collecting it home, and keeping it.

``hostfolder`` reads what a job left on the host (outputs, traceback, log); ``plan`` lists and
selects, ``collector`` with ``tarstream`` and ``download`` brings files home verified;
``local`` is the local copy (``LocalResults``: one folder per job and its manifest);
``archive``/``tarball`` pack a job's local copy; ``policy`` and ``deletion`` are the rules and
the steps of a cleanup. What the Client offers over them is ``results_service``; measuring and
cleaning up many jobs at once is ``housekeeping``.
"""

from .collector import collect, fetch_file
from .loaders import load
from .local import LocalResults
from .plan import ERROR_FILE

__all__ = ["ERROR_FILE", "LocalResults", "collect", "fetch_file", "load"]
