#!/usr/bin/env bash
# On a GPU machine without OpenSSH: run the demo job through a real sshd on 127.0.0.1, using an
# sshd and ssh-keygen carried in DIR (binaries in DIR/bin, their libraries in DIR/lib, copied from
# a Debian machine). Usage: bench/gpu_device_ssh.sh CARRY_DIR OUT_DIR
set -uo pipefail
carry=$(cd "${1:?carry dir}" && pwd); out=${2:?out dir}; mkdir -p "$out"
here=$(cd "$(dirname "$0")/.." && pwd)
wrap() { printf '#!/bin/sh\nLD_LIBRARY_PATH=%s/lib exec %s/bin/%s "$@"\n' "$carry" "$carry" "$1" > "$2"; chmod +x "$2"; }
[ -x /usr/sbin/sshd ] || wrap sshd /usr/sbin/sshd
command -v ssh-keygen >/dev/null || wrap ssh-keygen /usr/local/bin/ssh-keygen
id sshd >/dev/null 2>&1 || useradd -r -M -d /run/sshd -s /usr/sbin/nologin sshd \
  || echo 'sshd:x:998:65534::/run/sshd:/usr/sbin/nologin' >> /etc/passwd
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 \
  python3 "$here/bench/gpu_demo_job.py" --out "$out" --via ssh 2>&1 | tee "$out/demo-ssh.log"
tail -20 "$out"/work/sshd/sshd.log > "$out/sshd-log-tail.txt" 2>/dev/null
