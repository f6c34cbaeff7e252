"""The configuration files of the test cluster (``harness.slurm``)."""

from __future__ import annotations

from pathlib import Path

CPUS = 16
"""Cores the node offers (``config_overrides``: more than this machine has; jobs barely use CPU)."""
GPUS = 4


def slurm_conf(base: Path, name: str, munge_socket: str, accounting: bool) -> str:
    """slurm.conf of the test cluster: one node ``localhost`` with CPUS cores and GPUS fake GPUs;
    partitions ``debug`` (default) and ``gpu``. ``batch_sched_delay=0``: schedule a batch job at
    submission (the default batches them up to 3 s later), so an idle cluster runs a job at once.
    ``MinJobAge=3600``: without accounting Slurm forgets a finished job after MinJobAge, and the
    overtime job (``test_slurm``) is checked at the end of the session, on a busy machine more
    than the default 5 minutes after it ended."""
    if accounting:
        acct = (
            "AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\n"
            f"AccountingStoragePort=6819\nAccountingStoragePass={munge_socket}\n"
            "AccountingStorageTRES=gres/gpu,gres/gpu:h100\nJobAcctGatherType=jobacct_gather/none"
        )
    else:
        acct = "AccountingStorageType=accounting_storage/none\n"
        acct += "JobAcctGatherType=jobacct_gather/none"
    return f"""ClusterName={name}
SlurmctldHost=localhost
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd.pid
SlurmctldLogFile={base}/log/slurmctld.log
SlurmdLogFile={base}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
{acct}
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0
GresTypes=gpu
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=3600
KillWait=5
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs={CPUS} RealMemory=4000 Gres=gpu:h100:{GPUS} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
"""


def slurmdbd_conf(base: Path, munge_socket: str) -> str:
    return f"""AuthType=auth/munge
AuthInfo=socket={munge_socket}
DbdHost=localhost
DbdPort=6819
SlurmUser=root
LogFile={base}/log/slurmdbd.log
PidFile={base}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
"""
