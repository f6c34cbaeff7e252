"""List what a job left for collection, computed on the host (stdlib only; one round trip).

argv[1]: the job folder. Prints JSON ``{"files": [[rel, size, sha256]...], "refused": [[rel,
why]...]}`` for ``outputs/`` (recursively) plus the log, metrics and traceback files. Symlinks
are never followed and anything that resolves outside the job folder is refused, not listed.
"""

import hashlib
import json
import os
import stat
import sys

TOP = ("output.log", "metrics.jsonl", "gpu.csv", "state/error.json")
TREE = "outputs"


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def inside(root, path):
    real = os.path.realpath(path)
    return real == root or real.startswith(root + os.sep)


def look(root, rel, files, refused):
    path = os.path.join(root, rel)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode):
        refused.append([rel, "symlink"])
    elif not inside(root, path):
        refused.append([rel, "outside the job folder"])
    elif stat.S_ISDIR(info.st_mode) and rel.split("/")[0] == TREE:
        for name in sorted(os.listdir(path)):
            look(root, rel + "/" + name, files, refused)
    elif stat.S_ISREG(info.st_mode):
        files.append([rel, info.st_size, sha256(path)])
    else:
        refused.append([rel, "not a regular file"])


def main(argv):
    root = os.path.realpath(argv[1])
    files, refused = [], []
    for rel in (*TOP, TREE):
        look(root, rel, files, refused)
    print(json.dumps({"files": files, "refused": refused}))


if __name__ == "__main__":
    main(sys.argv)
