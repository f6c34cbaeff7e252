"""Transports run commands and move files on one host: ``LocalTransport`` or ``SSHTransport``."""

from .base import CommandResult, Transport
from .local import LocalTransport

__all__ = ["CommandResult", "LocalTransport", "Transport"]
