"""Schedulers launch a job folder and report job states; they receive a Transport."""

from .base import Observation, Scheduler
from .process import ProcessScheduler
from .slurm import SlurmScheduler

__all__ = ["Observation", "ProcessScheduler", "Scheduler", "SlurmScheduler"]
