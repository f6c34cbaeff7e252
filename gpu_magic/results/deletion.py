"""Deleting job folders on their host: only ever ``{base_path}/{job_id}``, checked first.

A stored ``remote_dir`` is data (a database row, possibly from an older configuration), so it
is never trusted as a path to ``rm -rf``: it must be exactly the job's own folder directly
under the cluster's (expanded, absolute) base path, with no ``.``/``..`` tricks.
"""

from __future__ import annotations

import posixpath
import re

from ..errors import InvalidRequestError
from ..models import GPUJob
from ..transport.base import Transport, quote_argv

JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def job_folder(base: str, job: GPUJob) -> str:
    """The folder a cleanup may delete for ``job``; refuses anything but ``{base}/{job.id}``."""
    folder = job.remote_dir.rstrip("/")
    why = _why_not(base, folder, job.id)
    if why:
        raise InvalidRequestError(
            f"refusing to delete {job.remote_dir!r} of job {job.id}: {why} "
            f"(base path {base!r} of cluster {job.cluster!r})"
        )
    return folder


def _why_not(base: str, folder: str, job_id: str) -> str | None:
    if not base.startswith("/") or posixpath.normpath(base) == "/":
        return "the base path is not an absolute folder below /"
    if not JOB_ID.match(job_id) or ".." in job_id:
        return "the job id is not a plain folder name"
    if posixpath.normpath(folder) != folder or "//" in folder:
        return "the path is not in normal form"
    if folder != posixpath.join(posixpath.normpath(base), job_id):
        return "it is not a job folder under the cluster's base path"
    return None


def delete_folders(transport: Transport, base: str, jobs: list[GPUJob]) -> list[str]:
    """``rm -rf -- FOLDER...`` on the host, one command for them all, after every path passed
    its check (one that fails refuses the whole command); returns the folders."""
    folders = [job_folder(base, job) for job in jobs]
    if folders:
        transport.run(quote_argv("rm", "-rf", "--", *folders)).check()
    return folders
