"""Spies at our own seam: the real transport, with what the services asked of it recorded."""

from __future__ import annotations

import time
from contextlib import contextmanager

from gpu_magic.transport.base import Transport


class DelegatingTransport(Transport):
    """Forwards every call to the real transport; subclasses record what they need."""

    def __init__(self, real: Transport):
        self.real, self.label = real, real.label

    def run(self, command, *, stdin=None, timeout=None):
        return self.real.run(command, stdin=stdin, timeout=timeout)

    def stream_from(self, command, size_hint=None):
        return self.real.stream_from(command, size_hint)

    def stream_to(self, command):
        return self.real.stream_to(command)

    def put_stream(self, source, remote, **options):
        return self.real.put_stream(source, remote, **options)

    def makedirs(self, remote):
        return self.real.makedirs(remote)

    def read_file(self, remote, offset=0):
        return self.real.read_file(remote, offset)

    def get_file(self, remote, local, *, offset=0, progress=None, digest=None):
        return self.real.get_file(remote, local, offset=offset, progress=progress, digest=digest)

    def list_tree(self, remote, roots):
        return self.real.list_tree(remote, roots)

    def home(self):
        return self.real.home()


class CountingTransport(DelegatingTransport):
    """Counts commands (``run`` and ``stream_from`` calls) and the time spent in them."""

    def __init__(self, real: Transport):
        super().__init__(real)
        self.commands, self.seconds = 0, 0.0

    def run(self, command, *, stdin=None, timeout=None):
        self.commands += 1
        start = time.perf_counter()
        try:
            return super().run(command, stdin=stdin, timeout=timeout)
        finally:
            self.seconds += time.perf_counter() - start

    @contextmanager
    def stream_from(self, command, size_hint=None):
        self.commands += 1
        start = time.perf_counter()
        try:
            with super().stream_from(command, size_hint) as stream:
                yield stream
        finally:
            self.seconds += time.perf_counter() - start
