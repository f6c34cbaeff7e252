"""One look at many job folders in one process on the host (stdlib only, sent with ``-c``).

Why Python and not shell: a shell loop forks for every ``stat``/``tail`` and 100 jobs x 3 files
would cost hundreds of forks per tick; one interpreter reads them all with seeks.

Input (``argv[1]``, JSON): ``{"names": {...}, "max_bytes": N, "jobs": [{"dir": D,
"offsets": {"output.log": 0}}]}``; every job-folder file name comes from the client, so this
script knows none. Output: one JSON object mapping each dir to what was seen.
Liveness is read before the exit code, so a job that ends between the reads shows its exit code
rather than a false "vanished".
"""

import base64
import json
import os
import sys


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


def look(job, names, max_bytes):
    folder = job["dir"]
    if not os.path.isdir(folder):
        return {"exists": False}
    state = os.path.join(folder, names["state"])
    pid = read_text(os.path.join(state, names["pid"]))
    seen = {"exists": True, "pid": pid, "alive": pid.isdigit() and alive(int(pid))}
    for key in ("started_at", "ended_at", "exit_code"):
        seen[key] = read_text(os.path.join(state, names[key]))
    seen["flags"] = [f for f in names["flags"] if os.path.exists(os.path.join(state, f))]
    offsets = job.get("offsets", {})
    seen["files"] = {n: tail(os.path.join(folder, n), o, max_bytes) for n, o in offsets.items()}
    return seen


def main():
    request = json.loads(sys.argv[1])
    names, max_bytes = request["names"], request["max_bytes"]
    result = {job["dir"]: look(job, names, max_bytes) for job in request["jobs"]}
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
