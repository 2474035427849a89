"""Answers as the client returns them: a body that does not fit, an error answer as a
GraphError."""

from __future__ import annotations

import pytest

from service.core.errors import GraphError
from workers.graph.models import Collection, SynchronizationJob
from workers.graph.response import GraphResponse, error_answer, loads, parse, parse_item


def test_a_body_that_does_not_parse_is_a_graph_error() -> None:
    """A 2xx answer whose body is not the resource is Graph's fault: MalformedResponse, with
    the answer's status and request-id to quote."""
    answer = GraphResponse(200, {"value": "not-a-list"}, "rid-1", "crid")
    with pytest.raises(GraphError) as info:
        parse(Collection, answer, "GET", "/jobs")
    assert info.value.code == "MalformedResponse"
    assert info.value.status == 200
    assert info.value.request_id == "rid-1"
    assert "value" in info.value.message


def test_an_error_answer_quotes_graphs_code_message_ids_and_retry_after() -> None:
    body = {
        "error": {
            "code": "Request_ResourceNotFound",
            "message": "Resource 'x' does not exist.",
            "innerError": {"request-id": "inner-rid", "date": "2030-01-01T00:00:00"},
        }
    }
    err = error_answer(404, body, None, "7", "crid", "GET", "/servicePrincipals/x")
    assert (err.status, err.code, err.message) == (
        404,
        body["error"]["code"],
        "Resource 'x' does not exist.",
    )
    assert err.request_id == "inner-rid"  # the body's, when the header is missing
    assert err.retry_after == 7.0
    assert (err.client_request_id, err.method, err.url) == ("crid", "GET", "/servicePrincipals/x")
    assert error_answer(404, body, "header-rid", None, "c", "GET", "/").request_id == "header-rid"


@pytest.mark.parametrize("body", [None, "<html>bad gateway</html>", {"unexpected": 1}])
def test_an_error_answer_without_graphs_error_body_is_named_by_its_status(body: object) -> None:
    err = error_answer(502, body, "rid", None, "crid", "POST", "/jobs")
    assert (err.status, err.code, err.message, err.retry_after) == (502, "HTTP502", "", None)


def test_an_item_of_a_page_that_does_not_fit_names_the_model_and_field() -> None:
    page = GraphResponse(200, {"value": []}, "rid-2", "crid")
    with pytest.raises(GraphError) as info:
        parse_item(SynchronizationJob, {"id": 5}, page, "/jobs")
    assert info.value.code == "MalformedResponse"
    assert "SynchronizationJob" in info.value.message
    assert info.value.request_id == "rid-2"


def test_a_body_that_is_not_json_reads_as_none() -> None:
    assert loads(b"<html>") is None
    assert loads(b'{"a": 1}') == {"a": 1}
