"""The one table of actions: every action a request may name has its steps, each but provision
finds the existing job first, and an old record without an action runs provision's."""

from __future__ import annotations

from typing import get_args

from service.core.actions import ACTIONS, reset_scope_value, steps_for
from service.core.models import Step
from service.core.request import ActionName


def test_the_table_covers_exactly_the_actions_a_request_may_name() -> None:
    assert set(ACTIONS) == set(get_args(ActionName))


def test_every_action_but_provision_acts_on_an_existing_job() -> None:
    for action in ACTIONS:
        steps = steps_for(action)
        assert len(set(steps)) == len(steps), action
        if action == "provision":
            assert Step.FIND_JOB not in steps
            assert steps.index(Step.CREATE_JOB) < steps.index(Step.START_JOB)
        else:
            assert steps[0] is Step.FIND_JOB, action


def test_an_unknown_action_runs_provision() -> None:
    assert steps_for("from-an-older-release") == steps_for("provision")


def test_reset_scope_flags_are_joined_as_graph_reads_them() -> None:
    assert reset_scope_value(["Watermark", "Escrows"]) == "Watermark, Escrows"
    assert reset_scope_value(None) == reset_scope_value([]) == ""
