"""Requests generated from the extension's own OpenAPI document (hypothesis): none gets a 500.

Every operation of ``openapi.json`` with path parameters drawn from hostile text as well as ids
(percent-encoded, as a client sends data in a path segment; raw ``..`` is test_routes' case),
query parameters of any type, and bodies of any JSON (a submit's code is always ``pass``: the
generated requests must not run generated programs).
"""

from __future__ import annotations

import json
import string
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.httpclient import HTTPClientError

from gpu_magic.server.openapi import document

pytestmark = pytest.mark.timeout(300)
OPERATIONS = [
    (path, method, op)
    for path, methods in sorted(document()["paths"].items())
    for method, op in methods.items()
]
TEXT = st.text(string.printable + "é/%.\x00", max_size=30)
IDS = st.one_of(TEXT, st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z"), st.just(".."))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT)
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3)
)
REQUEST_FIELDS = ["cluster", "name", "gpus", "env", "args", "language", "timeout", "resources"]


def query_value(parameter: dict):
    if parameter["schema"]["type"] == "integer":
        return st.one_of(st.integers(-5, 2000).map(str), TEXT)
    return TEXT


@st.composite
def requests(draw):
    path, method, op = draw(st.sampled_from(OPERATIONS))
    for parameter in op.get("parameters", []):
        if parameter["in"] == "path":
            value = quote(draw(IDS) or "x", safe="")  # data in a path segment, as a client sends it
            path = path.replace("{" + parameter["name"] + "}", value)
    query = {}
    for parameter in op.get("parameters", []):
        if parameter["in"] == "query" and draw(st.booleans()):
            query[parameter["name"]] = draw(query_value(parameter))
    body = None
    if method == "post":
        fields = draw(st.dictionaries(st.sampled_from(REQUEST_FIELDS), JSON, max_size=4))
        body = json.dumps({**fields, "code": "pass"} if draw(st.booleans()) else draw(JSON))
    return method.upper(), path.lstrip("/"), query, body


@pytest.mark.parametrize("cluster", ["local"], indirect=True)
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(request=requests())
def test_no_generated_request_gets_a_500(jp_fetch, gpu_server, jp_asyncio_loop, request):
    method, path, query, body = request

    async def send():
        try:
            response = await jp_fetch(path, method=method, params=query, body=body)
            return response.code
        except HTTPClientError as error:
            return error.code

    code = jp_asyncio_loop.run_until_complete(send())
    assert code < 500, request
