"""Graph's application resources: the default user role an assignment takes, and OData string
literals."""

from __future__ import annotations

from workers.graph.apps import DEFAULT_ACCESS_ROLE, AppRole, default_user_role, odata_string


def test_default_user_role() -> None:
    user = AppRole(id="u", display_name="User", allowed_member_types=["User"])
    msiam = AppRole(id="m", display_name="msiam_access", allowed_member_types=["User"])
    other = AppRole(id="o", display_name="Admin", allowed_member_types=["User"])
    assert default_user_role([]) == DEFAULT_ACCESS_ROLE
    assert default_user_role([msiam]) == "m"
    assert default_user_role([user, msiam]) == "u"
    assert default_user_role([msiam, other]) is None


def test_odata_string_doubles_quotes() -> None:
    assert odata_string("O'Neil's app") == "'O''Neil''s app'"
