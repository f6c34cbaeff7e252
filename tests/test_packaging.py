"""Packaging fails before anything is sent: missing names, unpicklable values, missing files."""

import threading

import pytest

from gpu_magic.errors import InvalidRequestError
from gpu_magic.formatting import size
from gpu_magic.models import GPUJobRequest
from gpu_magic.packaging.bundle import build_bundle
from gpu_magic.packaging.files import collect_files
from gpu_magic.packaging.inputs import pickle_inputs


def test_missing_input_name_is_named():
    with pytest.raises(InvalidRequestError, match="--inputs: 'train_df' is not defined"):
        pickle_inputs(("x", "train_df"), {"x": 1})


def test_unpicklable_input_names_the_variable_and_the_reason():
    with pytest.raises(InvalidRequestError) as info:
        pickle_inputs(("lock",), {"lock": threading.Lock()})
    assert "cannot send 'lock' (lock)" in str(info.value)
    assert "pickle" in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InvalidRequestError, match="--files: 'nope.csv' does not exist"):
        collect_files(("nope.csv",), tmp_path)


def test_layout_ignores_and_gpuignore(tmp_path):
    (tmp_path / ".gpuignore").write_text("*.ckpt\nlogs/\n")
    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    (data / "x.csv").write_text("1")
    (data / "big.ckpt").write_text("skip")
    (data / "logs" / "a.log").write_text("skip")
    (data / "__pycache__").mkdir()
    (data / "__pycache__" / "m.pyc").write_text("skip")
    (tmp_path / "train.py").write_text("pass")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.txt"
    outside.write_text("o")
    files = collect_files(("data", "train.py", str(outside)), tmp_path)
    assert [f.rel for f in files] == ["data/x.csv", outside.name, "train.py"]


def test_shipped_file_cannot_overwrite_the_cell(tmp_path):
    (tmp_path / "main.py").write_text("print('hi')")
    request = GPUJobRequest.create(code="pass", files=("main.py",))
    with pytest.raises(InvalidRequestError, match="would overwrite the cell"):
        build_bundle("j", request, {}, collect_files(request.files, tmp_path), "#!/bin/bash")


def test_bundle_ships_runner_and_cloudpickle_and_shows_a_manifest(tmp_path):
    (tmp_path / "a.txt").write_text("x" * 1500)
    request = GPUJobRequest.create(code="y = x", inputs=("x",), outputs=("y",), files=("a.txt",))
    bundle = build_bundle(
        "job-1", request, pickle_inputs(("x",), {"x": 5}), collect_files(("a.txt",), tmp_path), ""
    )
    rels = {e.rel for e in bundle.entries}
    assert {"spec.json", "run.sh", "code/main.py", "inputs/x.pkl", "code/a.txt"} <= rels
    assert "lib/gpu_magic/remote/runner.py" in rels
    assert "lib/cloudpickle/__init__.py" in rels
    line = bundle.manifest_line("local")
    assert line.startswith("gpu_magic: job job-1 → local | inputs: x (")
    assert "files: 1 (1.5 kB)" in line


def test_one_byte_size_format_for_everything_users_see():
    """Decimal SI units everywhere (upload line, results, storage tables): never "KB" beside
    "kB"; ``exact`` gives the bytes."""
    assert [size(n) for n in (12, 1500, 2_500_000, 3e9)] == ["12 B", "1.5 kB", "2.5 MB", "3.0 GB"]
    assert size(None) == "-" and size(1500, exact=True) == "1500"
