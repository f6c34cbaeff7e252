"""Small helpers the collector runs on the host (stdlib only; one command each).

The job folder itself is listed over SFTP (``Transport.list_tree``): no command, so no login
shell's start-up before anything moves. What needs the host's CPU runs here:

``--tar JOBDIR REL...``: writes an uncompressed pax tar of those regular files to stdout, so
many small files cost one command. Each file is read whole into memory and its sha256
computed from exactly those bytes, which travel in the member's ``GPU_MAGIC.sha256`` pax
header: the collector checks what it received against it. Every member is a plain file
named exactly REL (never a link, whatever tar would make of hard links); a REL that is
missing, not a regular file or outside the folder is left out (opened without following a
final symlink), and the collector fetches or reports it on its own.

``--sha256 FILE``: prints FILE's sha256 (Python's hashlib uses the CPU's SHA instructions,
which ``sha256sum`` often does not); the collector runs it beside a big file's download.
"""

import hashlib
import io
import os
import stat
import sys
import tarfile

HEADER = "GPU_MAGIC.sha256"
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


def send_tar(root, rels):
    out = sys.stdout.buffer
    with tarfile.open(fileobj=out, mode="w|", bufsize=1 << 16, format=tarfile.PAX_FORMAT) as tar:
        for rel in rels:
            try:
                add(tar, root, rel)
            except (OSError, ValueError) as exc:
                sys.stderr.write(f"left out {rel}: {exc}\n")


def no_follow(path, flags):
    return os.open(path, flags | os.O_NOFOLLOW)


def add(tar, root, rel):
    """One regular file as a plain member named ``rel`` with the sha256 of the bytes sent;
    raises when it may not be one."""
    path = os.path.join(root, rel)
    with open(path, "rb", opener=no_follow) as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or not inside(root, path):
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
        send_tar(os.path.realpath(argv[2]), argv[3:])
    else:
        sys.exit(f"usage: {argv[0]} --tar JOBDIR REL... | --sha256 FILE")


if __name__ == "__main__":
    main(sys.argv)
