"""Sizes of job folders, computed on the host (stdlib only; one round trip for all jobs).

stdin: a JSON list of folders. Prints a JSON object ``{folder: bytes or null}``: the sum of the
sizes of the regular files under each folder (null when the folder does not exist). Symlinks
are never followed (neither to files nor to folders), so a link cannot make a job look bigger
or send the walk elsewhere; unreadable subfolders count as empty.
"""

import json
import os
import stat
import sys


def size_of(folder):
    try:
        info = os.lstat(folder)
    except OSError:
        return None
    if not stat.S_ISDIR(info.st_mode):
        return None
    total, todo = 0, [folder]
    while todo:
        try:
            entries = list(os.scandir(todo.pop()))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                todo.append(entry.path)
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    return total


def main():
    folders = json.loads(sys.stdin.read() or "[]")
    print(json.dumps({folder: size_of(folder) for folder in folders}))


if __name__ == "__main__":
    main()
