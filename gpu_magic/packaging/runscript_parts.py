"""The bash text of ``run.sh``, in pieces that ``runscript`` fills and joins.

``@NAME@`` placeholders are filled by ``runscript._fill`` with shell-quoted values only.
"""

JOB_PIDS = r"""# _job_pids: _gm_pids := live processes, except this shell, in a process group
# that is a key of _gm_groups or with a key of _gm_markers (NAME=VALUE) in their environment;
# those started before _gm_since (clock ticks after boot) are skipped unread: neither a
# group's member nor a marker's heir is older than the group's leader (pure bash: no forks)
_job_pids() {
  _gm_pids=()
  local f line pid kv IFS=$' \t\n'
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue
    pid=${f#/proc/}
    pid=${pid%/stat}
    [ "$pid" = "$$" ] && continue
    set -- ${line##*) }
    case "$1" in Z | X) continue ;; esac
    [ "${20}" -lt "${_gm_since:-0}" ] && continue
    if [ -n "${_gm_groups[$3]+x}" ]; then
      _gm_pids+=("$pid")
      continue
    fi
    while IFS= read -r -d '' kv; do
      if [ -n "${_gm_markers["$kv"]+x}" ]; then
        _gm_pids+=("$pid")
        break
      fi
    done 2>/dev/null <"/proc/$pid/environ"
  done
}

# _started PID: _gm_started := the process's start time in clock ticks after boot (0: gone)
_started() {
  _gm_started=0
  local line IFS=$' \t\n'
  { read -r line <"/proc/$1/stat"; } 2>/dev/null || return 0
  set -- ${line##*) }
  _gm_started=${20}
}
"""

PRELUDE = r"""umask 077 # what the job writes (outputs, logs, checkpoints) is the user's alone
# Before the cell starts and after it ends, every external command is a fork and an exec (2-3 ms
# each on a busy node), and those add to the time of every job: builtins where they will do
case $0 in */*) cd "${0%/*}" || exit 1 ;; esac
_gm_jobdir="$(pwd -P)" || exit 1
declare -A _gm_groups=(["$$"]=1) _gm_markers=(["@MARKER@=$_gm_jobdir"]=1)
_gm_log="$_gm_jobdir"/@LOG@
_gm_child=""
_gm_watchdog=""
_gm_sampler=""

_log() { printf '[gpu_magic] %s\n' "$*" >>"$_gm_log"; }
_now() { TZ=UTC0 printf -v _gm_now '%(%Y-%m-%dT%H:%M:%SZ)T' -1; } # _gm_now := now, in UTC

# _write_state NAME VALUE: write state/NAME atomically (temp file + mv)
_write_state() {
  printf '%s\n' "$2" >@STATE@/".$1.tmp" && mv -f @STATE@/".$1.tmp" @STATE@/"$1"
}

# _stop_sampler: stop the GPU sampler and wait for it (it stops its nvidia-smi)
_stop_sampler() {
  if [ -n "$_gm_sampler" ]; then
    kill "$_gm_sampler" 2>/dev/null
    wait "$_gm_sampler" 2>/dev/null
    _gm_sampler=""
  fi
}

# _finish CODE: record the end; exit_code last, readers take it to mean "finished". The room
# kept at the start is given back first: a cell that filled the disk still gets its end written
_finish() {
  : 2>/dev/null >@STATE@/@RESERVE@ # emptied now, removed once the end is written
  _stop_sampler
  _now
  _write_state @ENDED_AT@ "$_gm_now"
  _write_state @EXIT_CODE@ "$1"
  rm -f @STATE@/@RESERVE@
  exit "$1"
}

_fail() { _log "$2"; _finish "$1"; }

# _start_id PID: _gm_start_id := "BOOT_ID START_TICKS", what tells this process from a later
# one with its pid ("" when unknown)
_start_id() {
  local boot
  _gm_start_id=""
  { read -r boot </proc/sys/kernel/random/boot_id; } 2>/dev/null || return 0
  _started "$1"
  [ "$_gm_started" = 0 ] || _gm_start_id="$boot $_gm_started"
}

@JOB_PIDS@
_started $$
_gm_since=$_gm_started

# _group_pids: _gm_pids := live processes of this job, except this shell: its process group,
# and those that left it (setsid) but carry the job's marker in their environment
_group_pids() {
  if [ ! -r /proc/$$/stat ]; then
    _gm_pids=()
    if [ -n "$_gm_child" ] && kill -0 "$_gm_child" 2>/dev/null; then _gm_pids=("$_gm_child"); fi
    return
  fi
  _job_pids
}

# _wait_group TICKS: wait up to TICKS tenths of a second for the group to empty
_wait_group() {
  local tick=0
  _group_pids
  while [ ${#_gm_pids[@]} -gt 0 ] && [ "$tick" -lt "$1" ]; do
    sleep 0.1
    tick=$((tick + 1))
    _group_pids
  done
}

# _stop_group: TERM the rest of the group, KILL what is left after the grace period
_stop_group() {
  kill -TERM -- -$$ 2>/dev/null
  _group_pids
  if [ ${#_gm_pids[@]} -gt 0 ]; then kill -TERM "${_gm_pids[@]}" 2>/dev/null; fi
  _wait_group @GRACE_TICKS@
  local round=0
  while [ ${#_gm_pids[@]} -gt 0 ] && [ "$round" -lt 10 ]; do
    _log "still running after @GRACE@ s, sending KILL to: ${_gm_pids[*]}"
    kill -KILL "${_gm_pids[@]}" 2>/dev/null
    _wait_group 10
    round=$((round + 1))
  done
}

# _cell_status FALLBACK: the cell's exit status as its wrapper recorded it, else FALLBACK
# (not from `wait`: after a trap has interrupted `wait`, bash 5 may report -1 for the child)
_cell_status() {
  local status
  if { read -r status <@STATE@/@CELL_STATUS@; } 2>/dev/null && [ -n "$status" ]; then
    echo "$status"
  else
    echo "$1"
  fi
}

_on_signal() {
  trap '' TERM INT HUP USR2
  _log "received SIG$1, stopping the job"
  _stop_group
  if [ -n "$_gm_child" ]; then
    _finish "$(_cell_status 137)"
  fi
  _finish @CANCELLED@
}

# Slurm's warning that the time limit is near (--signal=B:USR2 at N s): stop the cell now, TERM
# and the grace period, so it can save a checkpoint; the job ends as a timeout, on its terms
_on_warning() {
  : >@STATE@/@LIMIT_WARNED@
  _log "the time limit is near (Slurm's warning, SIGUSR2): stopping the cell to let it checkpoint"
  _on_signal TERM
}

trap '_on_signal TERM' TERM
trap '_on_signal INT' INT
trap '_on_signal HUP' HUP
trap '_on_warning' USR2

mkdir -p @STATE@ @OUTPUTS@ @CHECKPOINTS@ || exit 1
# the cell runs in code/: its relative outputs/ and checkpoints/ are the job's own folders
for _gm_d in @OUTPUTS@ @CHECKPOINTS@; do
  if [ ! -e @CODE@/"$_gm_d" ] && [ ! -L @CODE@/"$_gm_d" ]; then
    ln -s ../"$_gm_d" @CODE@/"$_gm_d" || exit 1
  fi
done
_gm_old=()
for _gm_f in @STATE@/@EXIT_CODE@ @STATE@/@ENDED_AT@ @STATE@/@TIMED_OUT@ @STATE@/@ERROR_JSON@ \
  @STATE@/@CELL_STATUS@ @STATE@/@GPU_TELEMETRY@ @STATE@/@LIMIT_WARNED@; do
  if [ -e "$_gm_f" ] || [ -L "$_gm_f" ]; then _gm_old+=("$_gm_f"); fi
done
if [ ${#_gm_old[@]} -gt 0 ]; then rm -f "${_gm_old[@]}"; fi # a previous attempt's
printf '%65536s' '' >@STATE@/@RESERVE@ 2>/dev/null || rm -f @STATE@/@RESERVE@
_write_state @PID@ "$$"
_start_id $$
_write_state @PID_START@ "$_gm_start_id"
_now
_write_state @STARTED_AT@ "$_gm_now"
if [ -e @STATE@/@CANCEL_REQUESTED@ ]; then
  _fail @CANCELLED@ "cancelled before the job started"
fi
"""

RESUME = r"""_gm_last=""
shopt -s nullglob
_gm_any=(@CHECKPOINTS@/*)
shopt -u nullglob
if [ ${#_gm_any[@]} -gt 0 ]; then _gm_last="$(ls -1t @CHECKPOINTS@ 2>/dev/null | head -n 1)"; fi
if [ -n "$_gm_last" ]; then
  export GPU_MAGIC_RESUME_FROM="$_gm_jobdir"/@CHECKPOINTS@/"$_gm_last"
  _log "attempt $GPU_MAGIC_ATTEMPT: resuming from "@CHECKPOINTS@"/$_gm_last"
elif [ "$GPU_MAGIC_ATTEMPT" != 1 ]; then
  _log "attempt $GPU_MAGIC_ATTEMPT: no checkpoint to resume from, starting over"
fi"""

# The watchdog, stopped by TERM when the cell ends: the TERM may come before its sleep's pid is
# known (the trap then only notes it) and the sleep must be gone before run.sh looks for what
# the job left running; otherwise a quick cell's job logs its own watchdog as left running.
WATCHDOG = r"""(
  _gm_sleep="" _gm_stop=""
  trap '_gm_stop=1; [ -z "$_gm_sleep" ] || kill "$_gm_sleep" 2>/dev/null' TERM
  sleep @SECONDS@ &
  _gm_sleep=$!
  [ -z "$_gm_stop" ] || kill "$_gm_sleep" 2>/dev/null
  if ! wait "$_gm_sleep" || [ -n "$_gm_stop" ]; then  # stopped, or its sleep was killed
    wait "$_gm_sleep" 2>/dev/null
    exit 0
  fi
  : >@STATE@/@TIMED_OUT@
  _log "timed out after @SECONDS@ s, stopping the job"
  kill -TERM -- -$$
) </dev/null >/dev/null 2>&1 &
_gm_watchdog=$!
"""

SAMPLER = r"""if [ -n "${CUDA_VISIBLE_DEVICES:-}${SLURM_JOB_GPUS:-}" ]; then
  @PYTHON@ -S "$_gm_jobdir"/@SAMPLER@ --pid $$ --out "$_gm_jobdir"/@GPU_CSV@ \
    --marker "$_gm_jobdir"/@STATE@/@GPU_TELEMETRY@ </dev/null >/dev/null 2>&1 &
  _gm_sampler=$!
else
  _write_state @GPU_TELEMETRY@ @NO_GPUS@
fi
"""

WRAPPER = r"""(
  trap : TERM
  cd @CODE@ || exit 1
  @COMMAND@
  _gm_status=$?
  printf '%s\n' "$_gm_status" >"$_gm_jobdir"/@STATE@/@CELL_STATUS@
  exit "$_gm_status"
) >>"$_gm_log" 2>&1 &
"""

FINISH = r"""_gm_child=$!
wait "$_gm_child"
_gm_rc=$(_cell_status $?)
trap '' TERM INT HUP USR2
if [ -n "$_gm_watchdog" ]; then
  kill "$_gm_watchdog" 2>/dev/null
  wait "$_gm_watchdog" 2>/dev/null
fi
_stop_sampler
_group_pids
if [ ${#_gm_pids[@]} -gt 0 ]; then
  _log "stopping processes the job left running: ${_gm_pids[*]}"
  _stop_group
fi
_finish "$_gm_rc"
"""
