"""provisionOnDemand's answer: two JSON strings parsed into typed steps (the reference's shape)."""

from __future__ import annotations

import json

import pytest

from workers.graph.ondemand import OnDemandAnswer, parse_answer
from workers.graph.schema import SynchronizationSchema
from workers.workflow.smoke import pick_rule


def answer(steps: list[dict[str, str]], result: str = "Success", **extra: object) -> OnDemandAnswer:
    value = {"provisioningSteps": steps, "action": "Update", **extra}
    return OnDemandAnswer(
        key=json.dumps({"result": result, "details": {}}), value=json.dumps(value)
    )


def test_the_reference_example_reads_as_a_success() -> None:
    steps = [
        {"name": "EntryImportAdd", "type": "Import", "status": "Success", "description": "x"},
        {"name": "EntryExportUpdate", "type": "Export", "status": "Success", "description": "y"},
    ]
    result = parse_answer(answer(steps, statusInfo={"status": "Success"}))
    assert result.succeeded
    assert [s.name for s in result.steps] == ["EntryImportAdd", "EntryExportUpdate"]
    assert result.action == "Update"


def test_a_failed_step_is_the_reason() -> None:
    steps = [
        {"name": "EntryImport", "status": "Success"},
        {"name": "EntryExportAdd", "status": "Failure", "description": "409 from the SCIM app"},
    ]
    extra = {
        "statusInfo": {"status": "Failure", "errorInformation": {"errorCode": "E", "reason": "r"}}
    }
    result = parse_answer(answer(steps, "Failure", **extra))
    assert not result.succeeded
    assert result.reason() == "EntryExportAdd Failure: 409 from the SCIM app; E: r"


@pytest.mark.parametrize("bad", [OnDemandAnswer(key="not json", value="{}"),
                                 OnDemandAnswer(key="{}", value="[1, 2]")])  # fmt: skip
def test_strings_that_are_not_json_objects_are_refused(bad: OnDemandAnswer) -> None:
    with pytest.raises(ValueError, match="JSON"):
        parse_answer(bad)


def test_the_rule_is_the_one_mapping_the_subjects_type() -> None:
    schema = SynchronizationSchema.model_validate(
        {
            "synchronizationRules": [
                {"id": "users", "objectMappings": [{"sourceObjectName": "User"}]},
                {"id": "groups#V2", "objectMappings": [{"sourceObjectName": "Group"}]},
            ]
        }
    )
    assert pick_rule(schema, "User") == "users"
    assert pick_rule(schema, "Group") == "groups#V2"
    only = SynchronizationSchema.model_validate({"synchronizationRules": [{"id": "one"}]})
    assert pick_rule(only, "Group") == "one"
    assert pick_rule(SynchronizationSchema(), "User") is None
