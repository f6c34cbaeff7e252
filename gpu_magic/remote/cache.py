"""The host's content-addressed file cache (stdlib only; run with the cluster's Python).

Shipped files are kept once per host under ``{base_path}/.cache/sha256/ab/abcdef…`` and
hard-linked into job folders (copied where a link is impossible: another file system, a link
limit). A cached file is read-only (its owner's read and execute bits only): one inode may
be in many job folders, so no job may change it under another. A file's link count says
whether any job folder still holds it: eviction removes only entries with no other link.

``python -c SOURCE lacking``   stdin: JSON ``{"root": R, "hashes": [...]}``; prints the JSON
                               list of those hashes the cache does not hold.
``python -c SOURCE commit R M C``  in an uploaded ``.partial`` folder: checks the sha256 of
                               every file that was sent (those the checksum file ``C`` lists,
                               minus the linked ones), adds the sent cacheable files to the
                               cache and links the cached ones in (the manifest ``M``:
                               ``{"add": {rel: h}, "link": {rel: h}}``; removed after). Like the
                               probe, this knows no file names: the client names them.
``python -c SOURCE evict R``   removes cache entries no job folder links to; prints
                               ``{"files": N, "bytes": B}``.
"""

import hashlib
import json
import os
import shutil
import stat
import sys
import time

STALE_TEMPORARY_S = 3600


def entry(root, digest):
    return os.path.join(root, digest[:2], digest)


def lacking(root, hashes):
    return [h for h in hashes if not os.path.isfile(entry(root, h))]


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_only(path):
    mode = stat.S_IMODE(os.lstat(path).st_mode)
    os.chmod(path, mode & 0o500 | 0o400)


def place(source, target, add):
    """Link ``source`` at ``target`` (a copy where linking fails). ``add``: into the cache,
    atomically (another upload may add the same file at the same moment)."""
    os.makedirs(os.path.dirname(target) or ".", mode=0o700, exist_ok=True)
    temporary = f"{target}.{os.getpid()}.tmp" if add else target
    try:
        os.link(source, temporary)
    except OSError:
        shutil.copy2(source, temporary)
    if add:
        os.replace(temporary, target)


def commit(root, manifest_name, checksums):
    with open(manifest_name) as f:
        manifest = json.load(f)
    os.unlink(manifest_name)
    linked = manifest.get("link", {})
    with open(checksums) as f:
        listed = [line.rstrip("\n").split("  ", 1) for line in f if line.strip()]
    for digest, rel in listed:
        if rel not in linked and sha256_of(rel) != digest:
            sys.exit(f"checksum mismatch: {rel}")
    for rel, digest in manifest.get("add", {}).items():
        read_only(rel)
        if not os.path.isfile(entry(root, digest)):
            place(rel, entry(root, digest), add=True)
    for rel, digest in linked.items():
        place(entry(root, digest), rel, add=False)


def evict(root):
    files = freed = 0
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            stale = name.endswith(".tmp") and time.time() - info.st_ctime > STALE_TEMPORARY_S
            if stat.S_ISREG(info.st_mode) and (info.st_nlink == 1 or stale):
                os.unlink(path)
                files, freed = files + 1, freed + info.st_size
    print(json.dumps({"files": files, "bytes": freed}))


def main():
    action = sys.argv[1]
    if action == "lacking":
        request = json.loads(sys.stdin.read())
        print(json.dumps(lacking(request["root"], request["hashes"])))
    elif action == "commit":
        commit(*sys.argv[2:5])
    elif action == "evict":
        evict(sys.argv[2])


if __name__ == "__main__":
    main()
