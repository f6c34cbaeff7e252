"""Small helpers the collector runs on the host (stdlib only; one command each).

The job folder itself is listed over SFTP (``Transport.list_tree``): no command, so no login
shell's start-up before anything moves. What needs the host's CPU runs here:

``--tar ROOT REL... [--digests BIG...]``: writes an uncompressed pax tar of those regular
files to stdout, so many small files cost one command. ROOT is a job folder (RELs like
``outputs/model.pt``) or, when several jobs are collected at once, the folder that holds them
(RELs like ``JOB/outputs/model.pt``): a REL must stay inside ROOT's entry its first part names
(the job folder, or the top file or folder of one), so no symlink leads from one job to
another. Each file is read whole into memory and its sha256 computed from exactly those
bytes, which travel in the member's ``GPU_MAGIC.sha256`` pax header: the collector checks
what it received against it. Every member is a plain file named exactly REL (never a link,
whatever tar would make of hard links); a REL that is missing, not a regular file or outside
its folder is left out (opened without following a final symlink), and the collector fetches
or reports it on its own.
With ``--digests``, a thread hashes the BIG files (which the collector downloads over SFTP
meanwhile) while the small members stream, and a final regular member named
``.gpu_magic/digests.json`` (a name no collected file can have) carries ``{BIG: sha256}``
for those it could read the same way: so big files cost no command more. No small files:
the tar holds that member alone.

``--sha256 FILE``: prints FILE's sha256 (Python's hashlib uses the CPU's SHA instructions,
which ``sha256sum`` often does not); the collector runs it beside a big file's download.
"""

import hashlib
import io
import json
import os
import stat
import sys
import tarfile
import threading
import time

HEADER = "GPU_MAGIC.sha256"
DIGESTS = ".gpu_magic/digests.json"
CHUNK = 1 << 20


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def inside(root, rel):
    """Whether ``rel`` resolves inside ``root``'s entry its first part names (that entry is
    not resolved: a symlinked job folder or ``outputs/`` leads outside it)."""
    folder = os.path.join(root, rel.split("/")[0])
    real = os.path.realpath(os.path.join(root, rel))
    return real == folder or real.startswith(folder + os.sep)


def send_tar(root, rels, bigs=()):
    out = sys.stdout.buffer
    digests = {}
    hasher = threading.Thread(target=hash_all, args=(root, bigs, digests), daemon=True)
    if bigs:
        hasher.start()  # hashlib lets go of the GIL: it runs beside the small members
    with tarfile.open(fileobj=out, mode="w|", bufsize=1 << 16, format=tarfile.PAX_FORMAT) as tar:
        for rel in rels:
            try:
                add(tar, root, rel)
            except (OSError, ValueError) as exc:
                sys.stderr.write(f"left out {rel}: {exc}\n")
        if bigs:
            hasher.join()
            data = json.dumps(digests, sort_keys=True, separators=(",", ":")).encode()
            member = tarfile.TarInfo(DIGESTS)
            member.size, member.mtime, member.mode = len(data), int(time.time()), 0o644
            tar.addfile(member, io.BytesIO(data))


def hash_all(root, rels, digests):
    """``digests[rel]``: the sha256 of each regular file inside the folder (others left out)."""
    for rel in rels:
        path = os.path.join(root, rel)
        try:
            with open(path, "rb", opener=no_follow) as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode) or not inside(root, rel):
                    raise ValueError("not a regular file inside the job folder")
                digest = hashlib.sha256()
                for chunk in iter(lambda f=f: f.read(CHUNK), b""):
                    digest.update(chunk)
            digests[rel] = digest.hexdigest()
        except (OSError, ValueError) as exc:
            sys.stderr.write(f"no digest for {rel}: {exc}\n")


def no_follow(path, flags):
    return os.open(path, flags | os.O_NOFOLLOW)


def add(tar, root, rel):
    """One regular file as a plain member named ``rel`` with the sha256 of the bytes sent;
    raises when it may not be one."""
    path = os.path.join(root, rel)
    with open(path, "rb", opener=no_follow) as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or not inside(root, rel):
            raise ValueError("not a regular file inside the job folder")
        data = f.read()
    member = tarfile.TarInfo(rel)
    member.size, member.mtime, member.mode = len(data), int(info.st_mtime), 0o644
    member.pax_headers = {HEADER: hashlib.sha256(data).hexdigest()}
    tar.addfile(member, io.BytesIO(data))


def main(argv):
    if argv[1] == "--sha256":
        print(sha256(argv[2]))
    elif argv[1] == "--tar":
        names = argv[3:]  # no collected name is "--digests": they all start with a folder
        cut = names.index("--digests") if "--digests" in names else len(names)
        send_tar(os.path.realpath(argv[2]), names[:cut], names[cut + 1 :])
    else:
        sys.exit(f"usage: {argv[0]} --tar ROOT REL... [--digests BIG...] | --sha256 FILE")


if __name__ == "__main__":
    main(sys.argv)
