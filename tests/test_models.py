"""Request validation: every mistake is one clear message naming the field."""

import pytest

from gpu_magic import GitSource, GPUJobRequest, JobStatus
from gpu_magic.errors import InvalidRequestError


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"inputs": ("not a name",)}, "inputs: 'not a name' is not a Python variable name"),
        ({"outputs": ("y", "y")}, "a variable is named twice"),
        ({"env": {"BAD-KEY": "1"}}, "'BAD-KEY' is not a valid environment variable name"),
        ({"env": {"K": "a\0b"}}, "contains a NUL byte"),
        ({"name": "-rf"}, "job name '-rf' must be"),
        ({"gpus": -1}, "gpus: Input should be greater than or equal to 0"),
        ({"timeout": 0}, "timeout: Input should be greater than 0"),
        ({"python": "/usr/bin/python3", "conda": "torch"}, "choose one of --python, --venv"),
        ({"language": "bash", "inputs": ("x",)}, "--inputs/--outputs need a Python cell"),
        ({"language": "ruby"}, "language: Input should be 'python' or 'bash'"),
    ],
)
def test_invalid_requests_give_clear_messages(fields, message):
    with pytest.raises(InvalidRequestError) as info:
        GPUJobRequest.create(code="pass", **fields)
    assert message in str(info.value)
    assert str(info.value).startswith("invalid job request: ")


def test_valid_request_round_trips_through_json():
    request = GPUJobRequest.create(
        code="y = x",
        inputs=("x",),
        outputs=("y",),
        env={"A": "1"},
        git=GitSource.parse("https://example.org/repo.git@v1.2"),
        gpus=2,
        name="train-1",
    )
    assert GPUJobRequest.model_validate_json(request.model_dump_json()) == request


@pytest.mark.parametrize(
    ("spec", "url", "ref"),
    [
        ("https://h/r.git", "https://h/r.git", None),
        ("https://h/r.git@main", "https://h/r.git", "main"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git", None),
        ("git@github.com:o/r.git@v2", "git@github.com:o/r.git", "v2"),
        ("/srv/repos/r", "/srv/repos/r", None),
    ],
)
def test_git_spec_parsing(spec, url, ref):
    source = GitSource.parse(spec)
    assert (source.url, source.ref) == (url, ref)


@pytest.mark.parametrize("spec", ["--upload-pack=evil", "https://h/r@$(id)", "https://h/r@a..b"])
def test_git_spec_rejects_option_and_shell_injection(spec):
    with pytest.raises(ValueError, match="not a git"):
        GitSource.parse(spec)


def test_terminal_states():
    assert {s for s in JobStatus if s.is_terminal} == {
        JobStatus.COMPLETED,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
        JobStatus.TIMEOUT,
        JobStatus.LOST,
    }
