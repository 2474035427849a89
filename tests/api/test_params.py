"""The shared query and path models: limits, patterns and the 422 problem that names each field
(the API's listings, /ui's form, and the OpenAPI document read the same models)."""

from __future__ import annotations

import pytest

from service.api.params import (
    MAX_LIMIT,
    ApplicationPath,
    is_request_id,
    parse_application_params,
    parse_list_params,
)
from service.api.problems import Problem

SP = "15331F0E-BDC6-41E2-AFA0-A4C9ABFE90B3"


def _fields(problem: Problem) -> list[str]:
    return sorted(e["field"] for e in problem.errors)


def test_a_listing_query_is_parsed_with_its_defaults() -> None:
    params = parse_list_params({"state": "queued", "servicePrincipalId": SP, "limit": "7"})
    assert (params.state, params.limit, params.cursor) == ("queued", 7, None)
    assert params.service_principal_id == SP.lower()
    assert parse_list_params({}).limit == 50


@pytest.mark.parametrize(
    "limit", ["0", str(MAX_LIMIT + 1), "1e2", "+5", " 5", "\u0665"]
)  # the last: an Arabic-Indic five
def test_a_limit_out_of_range_or_not_plain_digits_is_a_422(limit: str) -> None:
    with pytest.raises(Problem) as info:
        parse_list_params({"limit": limit})
    assert info.value.status == 422
    assert _fields(info.value) == ["limit"]


def test_every_bad_parameter_is_named_at_once() -> None:
    with pytest.raises(Problem) as info:
        parse_list_params({"state": "done", "caller": "a b", "colour": "red"})
    assert _fields(info.value) == ["caller", "colour", "state"]


def test_an_empty_cursor_is_no_cursor_and_a_form_drops_blank_fields() -> None:
    assert parse_list_params({"cursor": ""}).cursor is None
    with pytest.raises(Problem):
        parse_list_params({"state": ""})
    assert parse_list_params({"state": " ", "limit": " 9 "}, drop_empty=True).limit == 9


def test_the_applications_query_and_path() -> None:
    assert parse_application_params({"health": "failing", "cursor": ""}).health == "failing"
    with pytest.raises(Problem) as info:
        parse_application_params({"health": "poorly", "state": "queued"})
    assert _fields(info.value) == ["health", "state"]
    path = ApplicationPath.model_validate({"servicePrincipalId": SP})
    assert path.service_principal_id == SP.lower()


def test_request_ids_are_32_lowercase_hex_digits() -> None:
    assert is_request_id("0" * 32)
    assert not is_request_id("0" * 31)
    assert not is_request_id("A" * 32)
