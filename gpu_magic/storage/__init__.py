"""Archiving, storage usage and the cleanup policy of job results, local and remote.

``tarball`` is the archive format; ``archive`` packs a job's results; ``usage`` measures
local and remote sizes (one command per host); ``policy`` is the pure rule logic;
``cleanup`` plans and carries out deletions and records them; ``service.Storage`` ties
them to a ``Client``.
"""
