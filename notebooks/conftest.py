"""nbval runs each tutorial as a new user would (``tutorial_env``): a fresh HOME and the demo SSH
host, set up before the notebook's kernel starts, so that a notebook's outputs do not depend
on which notebooks ran before it (``refresh.py`` runs one the same way).

What changes from run to run is masked by ``sanitize.cfg`` (ids, times, sizes) and, for whole
outputs, here: a transfer's progress line is shown only when the upload or download outlasts a
poll, so whether it is there at all depends on the machine's load; it is left out of both sides
of the comparison. Every other output must match."""

import re

import pytest
from nbval.plugin import IPyNbCell
from tutorial_env import TutorialEnv, needs, slurm_missing

TRANSFER_LINE = re.compile(
    r"^(listing the job's files…|done: [\d.]+ \w+ in |[\d.]+ \w+ / [\d.]+ \w+ · |failed after )"
)

_env = TutorialEnv()
_current = {"notebook": None}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before the first cell of a notebook (whose setup starts its kernel): a new user."""
    if item.parent is not _current["notebook"]:
        _env.leave()
        _current["notebook"] = item.parent
        wanted = needs(item.parent.path)
        if "slurm" in wanted and (why := slurm_missing()):
            _current["skip"] = why
        else:
            _current["skip"] = None
            _env.enter(wanted)
    if _current.get("skip"):
        pytest.skip(_current["skip"])


def pytest_unconfigure(config):
    _env.leave()


def transient(output) -> bool:
    """A transfer's progress line (``ui.transfer``), shown or not as the timing falls."""
    text = (
        output.get("data", {}).get("text/plain", "")
        if output.get("output_type") == "display_data"
        else ""
    )
    return bool(TRANSFER_LINE.match("".join(text)))


_compare_outputs = IPyNbCell.compare_outputs


def compare_outputs(self, test, ref, skip_compare=None):
    keep = [o for o in test if not transient(o)], [o for o in ref if not transient(o)]
    return _compare_outputs(self, *keep, skip_compare)


IPyNbCell.compare_outputs = compare_outputs
