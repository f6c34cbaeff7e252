"""What a job left for collection, computed on the host (stdlib only; one round trip each).

``JOBDIR``: prints JSON ``{"files": [[rel, size, sha256]...], "refused": [[rel, why]...]}`` for
``outputs/`` (recursively) plus the log, metrics and traceback files. A file of ``BIG`` bytes
or more gets ``null`` for its sha256: hashing it here first would make the whole collection
wait; the collector asks ``--sha256`` for it on another channel while its bytes move.
Symlinks are never followed and anything that resolves outside the job folder is refused.

``--sha256 FILE``: prints FILE's sha256 (Python's hashlib uses the CPU's SHA instructions,
which ``sha256sum`` often does not).

``--tar JOBDIR REL...``: writes an uncompressed tar of those regular files to stdout, so many
small files cost one round trip. Every member is a plain file named exactly REL (never a
link, whatever tar would make of hard links); a REL that is missing, not a regular file or
outside the folder is left out, and the collector fetches or reports it on its own.
"""

import hashlib
import json
import os
import stat
import sys
import tarfile

TOP = ("output.log", "metrics.jsonl", "gpu.csv", "state/error.json")
TREE = "outputs"
BIG = 1 << 20
CHUNK = 1 << 20


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
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
        files.append([rel, info.st_size, sha256(path) if info.st_size < BIG else None])
    else:
        refused.append([rel, "not a regular file"])


def listing(root):
    files, refused = [], []
    for rel in (*TOP, TREE):
        look(root, rel, files, refused)
    print(json.dumps({"files": files, "refused": refused}))


def send_tar(root, rels):
    with tarfile.open(fileobj=sys.stdout.buffer, mode="w|", bufsize=1 << 16) as tar:
        for rel in rels:
            try:
                add(tar, root, rel)
            except (OSError, ValueError) as exc:
                sys.stderr.write(f"left out {rel}: {exc}\n")


def no_follow(path, flags):
    return os.open(path, flags | os.O_NOFOLLOW)


def add(tar, root, rel):
    """One regular file as a plain member named ``rel``; raises when it may not be one."""
    path = os.path.join(root, rel)
    with open(path, "rb", opener=no_follow) as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or not inside(root, path):
            raise ValueError("not a regular file inside the job folder")
        member = tarfile.TarInfo(rel)
        member.size, member.mtime, member.mode = info.st_size, int(info.st_mtime), 0o644
        tar.addfile(member, f)


def main(argv):
    if argv[1] == "--sha256":
        print(sha256(argv[2]))
    elif argv[1] == "--tar":
        send_tar(os.path.realpath(argv[2]), argv[3:])
    else:
        listing(os.path.realpath(argv[1]))


if __name__ == "__main__":
    main(sys.argv)
