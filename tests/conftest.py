"""Shared fixtures. Harness pieces (real sshd, fake nvidia-smi) live in ``tests/harness``."""

pytest_plugins = ["harness.fixtures", "harness.slurm_fixtures", "harness.clients", "harness.tiers"]
