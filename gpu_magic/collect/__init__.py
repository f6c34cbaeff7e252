"""Results collection: the host's listing, verified resumable downloads, the local store."""

from .collector import collect, fetch_file
from .loaders import load
from .plan import ERROR_FILE
from .store import ResultsStore

__all__ = ["ERROR_FILE", "ResultsStore", "collect", "fetch_file", "load"]
