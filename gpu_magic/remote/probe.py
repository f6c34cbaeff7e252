"""One look at many job folders in one process on the host (stdlib only, sent with ``-c``).

Why Python and not shell: a shell loop forks for every ``stat``/``tail`` and 100 jobs x 3 files
would cost hundreds of forks per tick; one interpreter reads them all with seeks.

Input (``argv[1]``, JSON): ``{"names": {...}, "max_bytes": N, "jobs": [{"dir": D,
"offsets": {"output.log": 0}}], "first": COMMAND, "until": S}``; every job-folder file name
comes from the client, so this script knows none. ``first`` (optional) is a shell command line
run before the folders are looked at (a scheduler's queue query: a job the queue no longer shows
has written its exit code by the time its folder is read). ``until`` (optional, seconds): first
wait up to that long for any of the jobs to write its exit code, so that a waiter hears of an
end at once instead of at its next poll (one round trip that waits on the host). Output:
``{"first": its stdout, "folders": {dir: what was seen}}``.
Liveness is read before the exit code, so a job that ends between the reads shows its exit code
rather than a false "vanished". A pid is alive only if it is still the same process: its start
time and the boot it started in match ``pid_start`` (after a reboot, pids are handed out
again). When run.sh is gone without an exit code, the job's other processes are looked for by
the marker in their environment (``names["marker"]=<job folder>``): a cell left running when
its runner was killed, a child started with ``setsid``.
"""

import base64
import functools
import json
import os
import subprocess
import sys
import time

UNTIL_POLL_S = 0.005
"""How often a waiting look checks for an exit code: a stat per job, so cheap next to the
round trip, and it is most of the time between a job's end and a waiter hearing of it."""


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # zombies are not alive
    except (OSError, IndexError):
        return True


@functools.cache
def boot_id():
    """The running boot's id (read once per probe: every live job asks)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def start_id(pid):
    """ "BOOT_ID START_TICKS" of a live pid (as run.sh writes it), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
    return f"{boot_id()} {ticks}" if boot_id() else None


def this_boot(recorded):
    """Whether run.sh's recorded start (``BOOT_ID TICKS``) is from the running boot (no
    record, from an older run.sh, or no boot id here: the pid is trusted, as before)."""
    return not recorded or not boot_id() or recorded.split()[0] == boot_id()


def same_process(pid, recorded):
    """Whether ``pid`` is alive and is the process run.sh recorded (no record: trust the pid)."""
    if not alive(pid):
        return False
    now = start_id(pid) if recorded else None
    return now is None or now == recorded


class Marked:
    """Live processes by process group and by the value of one environment variable, read
    once per probe (only when some job needs it: reading every process costs more than a
    tick). A forked subshell (run.sh's wrapper of the cell) has its parent's environment as
    it was at exec time, without the marker, but it stays in the group."""

    def __init__(self, variable):
        self.prefix = (variable + "=").encode()
        self.by_value = self.by_group = None

    def pids(self, value, group):
        if self.by_value is None:
            self.by_value, self.by_group = self._scan()
        return sorted(set(self.by_value.get(value, [])) | set(self.by_group.get(group, [])))

    def _scan(self):
        by_value, by_group = {}, {}
        me = os.getpid()
        for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
            if not entry.isdigit() or int(entry) == me or not alive(int(entry)):
                continue
            pid = int(entry)
            group = _group_of(pid)
            if group is not None:
                by_group.setdefault(group, []).append(pid)
            value = self._marker(pid)
            if value is not None:
                by_value.setdefault(value, []).append(pid)
        return by_value, by_group

    def _marker(self, pid):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:  # another user's process, or gone
            return None
        for item in env:
            if item.startswith(self.prefix):
                return item[len(self.prefix) :].decode(errors="replace")
        return None


def _group_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read().strip()
    except OSError:
        return ""


def tail(path, offset, max_bytes):
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    if size < offset:  # replaced or truncated: start again
        offset = 0
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(min(max_bytes, size - offset))
    return {"offset": offset, "size": size, "data": base64.b64encode(data).decode()}


def look(job, names, max_bytes, marked):
    folder = job["dir"]
    if not os.path.isdir(folder):
        return {"exists": False}
    state = os.path.join(folder, names["state"])
    pid = read_text(os.path.join(state, names["pid"]))
    recorded = read_text(os.path.join(state, names["pid_start"]))
    seen = {"exists": True, "pid": pid, "alive": pid.isdigit() and same_process(int(pid), recorded)}
    for key in ("started_at", "ended_at", "exit_code", "submitted_id"):
        seen[key] = read_text(os.path.join(state, names[key]))
    if pid.isdigit() and not seen["alive"] and not seen["exit_code"]:
        group = int(pid) if this_boot(recorded) else None  # after a reboot: someone else's
        seen["stragglers"] = marked.pids(os.path.realpath(folder), group)
    # after the scan: a cell that ended during it has written its status by now
    seen["cell_status"] = read_text(os.path.join(state, names["cell_status"]))
    seen["flags"] = [f for f in names["flags"] if os.path.exists(os.path.join(state, f))]
    offsets = job.get("offsets", {})
    seen["files"] = {n: tail(os.path.join(folder, n), o, max_bytes) for n, o in offsets.items()}
    return seen


def await_end(jobs, names, seconds):
    """Return once any job's exit code exists, or after ``seconds``."""
    codes = [os.path.join(job["dir"], names["state"], names["exit_code"]) for job in jobs]
    deadline = time.monotonic() + seconds
    while not any(os.path.exists(code) for code in codes) and time.monotonic() < deadline:
        time.sleep(UNTIL_POLL_S)


def first(command):
    """The stdout of ``command`` (its stderr goes to ours), or "" when there is none."""
    if not command:
        return ""
    done = subprocess.run(["/bin/sh", "-c", command], stdout=subprocess.PIPE, check=False)
    return done.stdout.decode("utf-8", "replace")


def main():
    request = json.loads(sys.argv[1])
    names, max_bytes = request["names"], request["max_bytes"]
    await_end(request["jobs"], names, request.get("until", 0))
    before = first(request.get("first", ""))
    marked = Marked(names["marker"])
    folders = {job["dir"]: look(job, names, max_bytes, marked) for job in request["jobs"]}
    sys.stdout.write(json.dumps({"first": before, "folders": folders}))


if __name__ == "__main__":
    main()
