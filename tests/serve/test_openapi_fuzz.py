"""Property-based fuzzing of the OpenAPI spec (schemathesis): no generated request gets a 5xx,
and every answer has a documented status code, content type and schema."""

from __future__ import annotations

from typing import List

import pytest
from hypothesis import HealthCheck, given, settings

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from panoplace.serve.app import create_app  # noqa: E402
from panoplace.serve.service import LocalisationService  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 12  # per operation; bounded so the suite stays quick


@pytest.mark.slow
def test_api_never_fails_on_generated_requests(service: LocalisationService) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(service))
    tested: List[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case) -> None:  # type: ignore[no-untyped-def]
            case.call_and_validate(checks=CHECKS)

        check()
        tested.append(f"{operation.method.upper()} {operation.path}")
    assert {"POST /v1/localize", "POST /v1/sessions", "POST /v1/sessions/{session_id}/frames", "GET /v1/map",
            "GET /healthz", "GET /metrics", "DELETE /v1/sessions/{session_id}"} <= set(tested)
