"""Property-based test of verikit serve's HTTP API against its own OpenAPI schema (schemathesis):
whatever a client sends, the answer is documented (status, content type, body schema), never a
5xx, and data the schema rejects is rejected."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import positive_data_acceptance  # noqa: E402

from tests.serve_helpers import ServerProcess, make_gallery  # noqa: E402

# Schema-valid is not enough for an image: random bytes are rightly refused (422), so "positive
# data must be accepted" cannot hold for the upload routes; every other default check applies.
EXCLUDED = [positive_data_acceptance]


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory, tiny_model_dir, synthetic_faces):
    from verikit.server.keys import add_key

    root = tmp_path_factory.mktemp("schema")
    gallery = make_gallery(tiny_model_dir, synthetic_faces, root / "g")
    key, _ = add_key(root / "keys.json", "fuzzer", ["admin"])
    with ServerProcess("-g", str(gallery), "--keys", str(root / "keys.json"), "--threshold", "0.5",
                       "--device", "cpu", "--max-pixels", "1000000") as s:
        yield s, {"Authorization": f"Bearer {key}"}


@pytest.mark.fuzz  # `make test` runs the short "ci" hypothesis profile, `make fuzz` the long one
def test_api_conforms_to_its_schema(keyed_server):
    # Hypothesis drives schemathesis's strategies directly (one property per operation): the same
    # checks as its pytest plugin, without depending on pytest internals.
    from hypothesis import HealthCheck, given, settings

    server, headers = keyed_server
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    examples = settings.default.max_examples
    examples = 15 if examples <= 40 else examples  # the CI profile: a short run per operation
    for operation in operations:
        @settings(max_examples=examples, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def conforms(case):
            case.call_and_validate(headers=headers, excluded_checks=EXCLUDED)
        conforms()
