"""``slurm`` scheduler: ``sbatch`` on a login node, over SSH or locally (same code, any Transport).

- submit: one command writes ``job.sbatch`` into the uploaded job folder (from stdin) and runs
  ``sbatch --parsable`` there, once (``SUBMIT``: repeated after a dropped connection it reports
  the first answer); Slurm's refusal comes back as a ``SchedulerError`` with its message. A
  submit whose answer was lost leaves the id in the folder, where the next look finds it.
- state: one command per tick for all jobs: ``squeue --me`` (all of the user's jobs, live and
  recently finished), the pending queue when a job is queued (its position), and only for jobs
  squeue shows finished or no longer knows: ``sacct`` (exit code and final state), falling back to
  ``scontrol show job`` when accounting is off. Whether ``sacct`` works is learnt on the first
  such poll and remembered (or set by the cluster's ``slurm.accounting``).
- cancel: flag the folder (run.sh then records "cancelled"), ``scancel``, and wait (bounded) until
  Slurm has stopped it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence

from .. import jobdir
from ..errors import ClusterConnectionError, InvalidRequestError, SchedulerError
from ..jobdir import JobDir
from ..models import GPUJob, GPUJobRequest, JobStatus, utcnow
from ..resources import Resources, SlurmDefaults, effective
from ..transport.base import Transport, quote_argv
from . import secret_env
from .base import Observation, Scheduler, Submitted, cancel_input
from .folder_probe import FolderState
from .slurm_parse import LIVE, PENDING_FORMAT, SACCT_FIELDS, SQUEUE_FORMAT, parse_state_output
from .slurm_script import render_array_script, render_sbatch_script, start_lines
from .slurm_state import decide

PENDING = quote_argv("squeue", "-h", "-r", "-t", "PD", "--sort=-p,i", "-o", PENDING_FORMAT)
SLURM_ID = re.compile(r"^\d+(_\d+)?\Z")
# Idempotent: only the submit that makes the ``submitted`` marker (mkdir is atomic) runs sbatch,
# detached from the connection (a drop cannot kill it halfway), with its answer written into
# state/; every submit, first or repeated after a drop, reports that one answer (the first waits
# for its sbatch; a repeat polls for the answer).
SUBMIT = (
    "umask 077 && cd {dir} && mkdir -p {state} && "
    "if mkdir {marker} 2>/dev/null; then rm -f {answer} {status} {error}{cancelled}; "
    "cat > {script} && "
    "{{ setsid nohup sh -c {sbatch} sh {script} {state} </dev/null >/dev/null 2>&1 & }}; "
    "wait $!; else cat >/dev/null; fi; "
    "i=0; while [ ! -e {status} ] && [ $i -lt {ticks} ]; do sleep 0.05; i=$((i+1)); done; "
    "if [ ! -e {status} ]; then echo 'sbatch has not answered yet' >&2; exit 75; fi; "
    'cat {error} >&2; cat {answer}; exit "$(cat {status})"'
)
SBATCH = (
    'GPU_MAGIC_ATTEMPT={attempt} sbatch --parsable "$1" >"$2"/.{answer}.tmp 2>"$2"/{error}; '
    'echo $? >"$2"/.{status}.tmp; '
    'mv "$2"/.{answer}.tmp "$2"/{answer}; mv "$2"/.{status}.tmp "$2"/{status}'
)
SBATCH_ARRAY = (
    '{fan_out}; GPU_MAGIC_ATTEMPT={attempt} sbatch --parsable "$1" >"$2"/.{answer}.tmp '
    '2>"$2"/{error}; _gm_rc=$?; if [ $_gm_rc = 0 ]; then announce "$2"/.{answer}.tmp; '
    'else mv "$2"/.{answer}.tmp "$2"/{answer}; fi; echo $_gm_rc >"$2"/.{status}.tmp; '
    'mv "$2"/.{status}.tmp "$2"/{status}'
)
# A job array's step around sbatch, run once, detached: before sbatch, every folder is marked
# submitted and task i's output (``state/array/i.out`` in folder 0, where sbatch runs) is made a
# link to folder i's ``slurm.out``; ``announce ANSWER`` (after a successful sbatch) writes
# ``ARRAYID_i`` into each folder i, before the status file that ends the submit's wait.
ARRAY_FAN_OUT = (
    "announce() {{ _gm_id=$(cut -d';' -f1 <\"$1\"); _gm_i=0; "
    "for _gm_d in {folders}; do "
    'printf "%s_%s\\n" "$_gm_id" $_gm_i >"$_gm_d"/{state}/.{answer}.fan && '
    'mv "$_gm_d"/{state}/.{answer}.fan "$_gm_d"/{state}/{answer}; _gm_i=$((_gm_i+1)); '
    'done; rm -f "$1"; }}; '
    "mkdir -p {state}/{tasks}; _gm_i=0; "
    "for _gm_d in {folders}; do "
    'mkdir -p "$_gm_d"/{state}; mkdir "$_gm_d"/{state}/{marker} 2>/dev/null; '
    'ln -sfn "$_gm_d"/{output} {state}/{tasks}/$_gm_i.out; _gm_i=$((_gm_i+1)); done'
)
SBATCH_WAIT_TICKS = 1200  # 60 s: sbatch retries a busy slurmctld on its own for a while
NOT_ANSWERED = 75
# The jobs come on stdin (Slurm id and folder, each ended by a NUL), never in the command,
# which stays this long however many there are (sshd hands it to the login shell as one
# argument, which Linux caps at 128 KiB). In bash: it reads NUL-ended fields into an array.
CANCEL = (
    "umask 077; ids=(); while IFS= read -r -d '' id && IFS= read -r -d '' dir; do ids+=(\"$id\"); "
    f'mkdir -p "$dir"/{jobdir.STATE} && touch "$dir"/{jobdir.STATE}/{jobdir.CANCEL_REQUESTED}; '
    'done; scancel "${ids[@]}"; _gm_rc=$?; list=$(IFS=,; echo "${ids[*]}"); _gm_i=0; '
    "while [ $_gm_i -lt 150 ]; do "
    '_gm_s=$(squeue -h -j "$list" -o %T 2>/dev/null | tr "\\n" " "); '
    'case "$_gm_s" in *PENDING*|*RUNNING*|*COMPLETING*|*CONFIGURING*|*SIGNALING*) ;; '
    "*) break;; esac; "
    "sleep 0.1; _gm_i=$((_gm_i+1)); done; exit $_gm_rc"
)
ALREADY_GONE = ("Invalid job id", "already completing or completed", "Job/step already")


def request_resources(request: GPUJobRequest, defaults: SlurmDefaults) -> Resources:
    """The request's resources with the cluster's defaults (InvalidRequestError if refused)."""
    try:
        return effective(request.resources, defaults, request.timeout)
    except ValueError as exc:
        raise InvalidRequestError(str(exc)) from None


def section(name: str, command: str) -> str:
    """``command``'s output framed as a ``@@gm`` section with its exit status."""
    return f"printf '@@gm {name}\\n'; {command} 2>&1; printf '@@gm rc %s\\n' $?"


class SlurmScheduler(Scheduler):
    name = "slurm"
    relaunch_safe = True  # SUBMIT runs sbatch once, however often it runs
    arrays = True
    holds = True  # --dependency, --begin

    def __init__(
        self,
        transport: Transport,
        interpreter: str = "python3",
        defaults: SlurmDefaults | None = None,
    ):
        super().__init__(transport, interpreter)
        self.defaults = defaults or SlurmDefaults()
        self.accounting = self.defaults.accounting

    # -- submit -----------------------------------------------------------------------------------
    def resources(self, request: GPUJobRequest) -> Resources:
        return request_resources(request, self.defaults)

    def submit(
        self,
        job: GPUJob,
        folder: JobDir,
        secrets: Mapping[str, str] | None = None,
        after: Sequence[str] = (),
    ) -> Submitted:
        script = render_sbatch_script(
            job.id,
            job.request,
            self.resources(job.request),
            self.defaults.gres_style,
            self.defaults.warn_before_limit,
            start_lines(job.request, after, utcnow()),
        )
        slurm_id = self._sbatch(str(folder), script, f"job {job.id}", job.attempt, secrets)
        return Submitted(slurm_id, JobStatus.QUEUED, f"submitted to Slurm as job {slurm_id}")

    def submit_array(
        self,
        name: str,
        jobs: list[GPUJob],
        max_running: int | None = None,
        secrets: Mapping[str, str] | None = None,
        after: Sequence[str] = (),
    ) -> list[Submitted]:
        """N uploaded job folders as ONE ``sbatch --array`` (task i runs ``jobs[i]``'s run.sh,
        at most ``max_running`` at once: ``%N``).

        Every task gets ``jobs[0]``'s resources. Submitted from ``jobs[0]``'s folder, once,
        like ``submit``; before sbatch runs, every folder is marked submitted, and before the
        answer is given every folder holds its own task's id (``ARRAYID_i``, which squeue,
        sacct, scontrol and scancel accept), so a look at any member whose answer was lost
        finds what it is. Slurm's own messages of task i go to its folder's ``slurm.out``.
        """
        if not jobs:
            return []
        folders = [job.remote_dir for job in jobs]
        script = render_array_script(
            name,
            jobs[0].request,
            self.resources(jobs[0].request),
            folders,
            self.defaults.gres_style,
            max_running,
            self.defaults.warn_before_limit,
            start_lines(jobs[0].request, after, utcnow()),
        )
        fan_out = ARRAY_FAN_OUT.format(
            folders=" ".join(quote_argv(f) for f in folders),
            state=jobdir.STATE,
            marker=jobdir.SUBMITTED,
            answer=jobdir.SLURM_ID,
            output=jobdir.SLURM_OUTPUT,
            tasks=jobdir.ARRAY_OUTPUTS,
        )
        what = f"job array {name}"
        array_id = self._sbatch(folders[0], script, what, secrets=secrets, fan_out=fan_out)
        array_id = array_id.split("_")[0]
        return [
            Submitted(f"{array_id}_{i}", JobStatus.QUEUED, f"Slurm array {array_id} task {i}")
            for i in range(len(jobs))
        ]

    def _sbatch(
        self,
        folder: str,
        script: str,
        what: str,
        attempt: int = 1,
        secrets: Mapping[str, str] | None = None,
        fan_out: str = "",
    ) -> str:
        """Run sbatch detached, once (see ``SUBMIT``); ``secrets`` go ahead of the script on
        stdin, into sbatch's environment, which Slurm hands to the job. ``fan_out`` (a job
        array's, ``ARRAY_FAN_OUT``) runs around sbatch, before its answer is given."""
        secrets = secrets or {}
        names = {"answer": jobdir.SLURM_ID, "status": jobdir.SBATCH_STATUS}
        names["error"] = jobdir.SBATCH_ERROR
        state = jobdir.STATE
        command = secret_env.reader(list(secrets)) + SUBMIT.format(
            dir=quote_argv(folder),
            state=state,
            marker=f"{state}/{jobdir.attempt_marker(jobdir.SUBMITTED, attempt)}",
            script=jobdir.SBATCH_SCRIPT,
            sbatch=shlex.quote(
                (SBATCH_ARRAY if fan_out else SBATCH).format(
                    **names, attempt=attempt, fan_out=fan_out
                )
            ),
            ticks=SBATCH_WAIT_TICKS,
            # run again after a cancel: this attempt is not cancelled
            cancelled="" if attempt == 1 else f" {state}/{jobdir.CANCEL_REQUESTED}",
            **{key: f"{state}/{name}" for key, name in names.items()},
        )
        stdin = secret_env.payload(secrets) + script.encode()
        result = self.transport.run(command, stdin=stdin)
        if result.exit_code == NOT_ANSWERED:
            raise ClusterConnectionError(
                f"sbatch for {what} has not answered within {SBATCH_WAIT_TICKS // 20} s "
                "(it may or may not have run; its answer will be in the job folder)"
            )
        if not result.ok:
            message = (result.stderr.decode(errors="replace") or result.text).strip()
            raise SchedulerError(f"Slurm refused {what}: {message or 'sbatch failed'}")
        slurm_id = result.text.strip().splitlines()[-1].split(";")[0] if result.text.strip() else ""
        if not SLURM_ID.fullmatch(slurm_id):
            raise SchedulerError(f"sbatch gave no job id for {what}: {result.text.strip()!r}")
        return slurm_id

    # -- state ------------------------------------------------------------------------------------
    def state_command(self, jobs: list[GPUJob]) -> str:
        ids = [
            j.scheduler_id for j in jobs if j.scheduler_id and SLURM_ID.fullmatch(j.scheduler_id)
        ]
        squeue = quote_argv("squeue", "--me", "-h", "-r", "-t", "all", "-o", SQUEUE_FORMAT)
        parts = [
            f"_gm_q=$({squeue} 2>&1); _gm_rc=$?",
            'printf \'@@gm squeue\\n%s\\n@@gm rc %s\\n\' "$_gm_q" "$_gm_rc"',
        ]
        if any(j.status == JobStatus.QUEUED for j in jobs):  # positions, while one is pending
            parts.append(f'case "$_gm_q" in *"|PENDING|"*) {section("pending", PENDING)} ;; esac')
        if ids:
            parts.append(self._finals_command(ids))
        return "; ".join(parts)

    def _finals_command(self, ids: list[str]) -> str:
        """sacct/scontrol for those of ``ids`` that squeue does not know or shows ended other
        than COMPLETED: a COMPLETED job's verdict is its folder's exit code (``slurm_state``),
        and sacct, ~100 ms on the test Slurm, was most of the time a waiter took to hear of an
        end."""
        skip = "|".join(sorted({*LIVE, "COMPLETED"}))
        pick = (
            "awk -F'|' -v ids=" + shlex.quote(" ".join(ids)) + " "
            + shlex.quote(
                'BEGIN{n=split(ids,a," ");for(i=1;i<=n;i++)w[a[i]]=1} '
                f'$2~/^({skip})$/{{delete w[$1]}} END{{for(k in w)printf "%s ",k}}'
            )
        )  # fmt: skip
        scontrol = section(
            "scontrol", 'for _gm_j in $_gm_d; do scontrol -o show job "$_gm_j"; done'
        )
        sacct = (
            "printf '@@gm sacct\\n'; sacct -X -n -P -o " + SACCT_FIELDS
            + " -j \"$(echo $_gm_d | tr ' ' ,)\" 2>&1; _gm_s=$?; printf '@@gm rc %s\\n' $_gm_s; "
            f"if [ $_gm_s != 0 ]; then {scontrol}; fi"
        )  # fmt: skip
        finals = scontrol if self.accounting is False else sacct
        return (
            f"_gm_d=$(printf '%s\\n' \"$_gm_q\" | {pick}); "
            f'if [ "$_gm_rc" = 0 ] && [ -n "$_gm_d" ]; then {finals}; fi'
        )

    def digest(self, state_output: str) -> None:
        learnt = parse_state_output(state_output).accounting
        if self.accounting is None and learnt is not None:
            self.accounting = learnt

    def observe(self, job: GPUJob, folder: FolderState, state_output: str) -> Observation:
        return decide(job, parse_state_output(state_output), folder)

    # -- cancel -----------------------------------------------------------------------------------
    def cancel_many(self, jobs: list[GPUJob]) -> None:
        """One ``scancel`` for them all, then one wait until squeue shows none alive."""
        for job in jobs:
            if not job.scheduler_id or not SLURM_ID.fullmatch(job.scheduler_id):
                raise SchedulerError(f"job {job.id} has no Slurm job id to cancel")
        ids = [job.scheduler_id for job in jobs]
        result = self.transport.run(quote_argv("bash", "-c", CANCEL), stdin=cancel_input(jobs))
        errors = result.stderr.decode(errors="replace") + result.text
        if not result.ok and not any(gone in errors for gone in ALREADY_GONE):
            raise SchedulerError(f"scancel {' '.join(ids)} failed: {errors.strip()}")
