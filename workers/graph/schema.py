"""A job's synchronization schema: the typed view the workflow reads, the raw document it
writes back, and the pure edit that applies a request's attribute mappings.

``PUT .../jobs/{id}/schema`` "fully replaces the current schema with the one provided"
(REF v1.0-synchronization-synchronizationschema-update.md), so the edit works on the whole
document as Graph sent it, keeps every property this service does not know, changes only the
named mappings, and says whether anything changed (no PUT otherwise). References:
synchronizationSchema, synchronizationRule, objectMapping, attributeMapping,
attributeMappingSource.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field

from service.core.specs import AttributeMappingSpec
from workers.graph.models import GraphModel


class AttributeMapping(GraphModel):
    target_attribute_name: str | None = None
    source: dict[str, Any] | None = None


class ObjectMapping(GraphModel):
    name: str | None = None
    source_object_name: str | None = None
    target_object_name: str | None = None
    attribute_mappings: list[AttributeMapping] = Field(default_factory=list)


class SynchronizationRule(GraphModel):
    id: str | None = None
    name: str | None = None
    object_mappings: list[ObjectMapping] = Field(default_factory=list)


class SynchronizationSchema(GraphModel):
    """The typed view: enough to check the shape before editing the raw document."""

    id: str | None = None
    version: str | None = None
    synchronization_rules: list[SynchronizationRule] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SchemaDocument:
    """A schema as Graph sent it (``raw``, what a PUT sends back) and its typed view."""

    raw: dict[str, Any]
    schema: SynchronizationSchema

    def object_mapping_names(self) -> list[str]:
        return [
            m.name for r in self.schema.synchronization_rules for m in r.object_mappings if m.name
        ]


@dataclass(slots=True)
class SchemaEdit:
    """The edited document, what changed (for the history) and object mappings not found."""

    raw: dict[str, Any]
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


_ATTRIBUTE = re.compile(r"^\[?([A-Za-z_][A-Za-z0-9_.\-]*)\]?$")
_CONSTANT = re.compile(r'^"(.*)"$', re.DOTALL)
_FUNCTION = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*\(.*\)$", re.DOTALL)


def mapping_source(text: str) -> dict[str, Any]:
    """An attributeMappingSource for ``text``: ``mail`` or ``[mail]`` is an Attribute,
    ``"x"`` a Constant, ``Join(",", [a], [b])`` a Function (Graph parses its expression)."""
    text = text.strip()
    if m := _ATTRIBUTE.match(text):
        name = m.group(1)
        return {"expression": f"[{name}]", "name": name, "parameters": [], "type": "Attribute"}
    if m := _CONSTANT.match(text):
        return {"expression": text, "name": m.group(1), "parameters": [], "type": "Constant"}
    name = m.group(1) if (m := _FUNCTION.match(text)) else None
    return {"expression": text, "name": name, "parameters": [], "type": "Function"}


def _same_source(current: Any, wanted: dict[str, Any]) -> bool:
    if not isinstance(current, dict):
        return False
    return bool(
        current.get("type") == wanted["type"]
        and str(current.get("expression") or "").strip() == wanted["expression"]
    )


def _new_mapping(target: str, source: dict[str, Any]) -> dict[str, Any]:
    return {
        "defaultValue": None,
        "exportMissingReferences": False,
        "flowBehavior": "FlowWhenChanged",
        "flowType": "Always",
        "matchingPriority": 0,
        "source": source,
        "targetAttributeName": target,
    }


def _object_mappings(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for rule in raw.get("synchronizationRules") or []:
        for om in (rule or {}).get("objectMappings") or []:
            if isinstance(om, dict) and isinstance(om.get("name"), str):
                found.setdefault(om["name"].lower(), om)
    return found


def apply_mappings(doc: SchemaDocument, specs: list[AttributeMappingSpec]) -> SchemaEdit:
    """Apply each spec to a copy of the document; ``changed`` is empty when it already holds
    every requested mapping (the PUT is then skipped)."""
    raw = copy.deepcopy(doc.raw)
    edit = SchemaEdit(raw=raw)
    by_name = _object_mappings(raw)
    for spec in specs:
        om = by_name.get(spec.object_mapping.lower())
        if om is None:
            if spec.object_mapping not in edit.missing:
                edit.missing.append(spec.object_mapping)
            continue
        mappings: list[dict[str, Any]] = om.setdefault("attributeMappings", [])
        target = spec.target.lower()
        same = [m for m in mappings if str(m.get("targetAttributeName") or "").lower() == target]
        label = f"{om['name']}.{spec.target}"
        if spec.remove:
            if same:
                om["attributeMappings"] = [m for m in mappings if m not in same]
                edit.changed.append(f"removed {label}")
            continue
        assert spec.source is not None
        wanted = mapping_source(spec.source)
        if same and all(_same_source(m.get("source"), wanted) for m in same):
            continue
        if same:
            for m in same:
                m["source"] = wanted
            edit.changed.append(f"set {label}")
        else:
            mappings.append(_new_mapping(spec.target, wanted))
            edit.changed.append(f"added {label}")
    return edit
