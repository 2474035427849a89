"""Job schemas: built from the principal's target attributes, read and replaced whole, with
the validation Graph applies (an unknown object or attribute is a 400). Pure (no aiohttp)."""

from __future__ import annotations

import copy
import datetime as dt
from collections import Counter
from typing import Any

from sandbox.models import bad_request

SOURCE = "Azure Active Directory"
SOURCE_OBJECTS = {
    "User": [
        "accountEnabled", "department", "displayName", "givenName", "IsSoftDeleted", "jobTitle",
        "mail", "mailNickname", "objectId", "surname", "userPrincipalName", "employeeId",
    ],
    "Group": ["displayName", "mailNickname", "members", "objectId"],
}  # fmt: skip
# Default mappings: target attribute -> (source expression, type, source name)
DEFAULTS = {
    "User": {
        "userName": ("[userPrincipalName]", "Attribute", "userPrincipalName"),
        "active": ("Not([IsSoftDeleted])", "Function", "Not"),
        "email": ("[mail]", "Attribute", "mail"),
        "displayName": ("[displayName]", "Attribute", "displayName"),
        "department": ("[department]", "Attribute", "department"),
        "title": ("[jobTitle]", "Attribute", "jobTitle"),
    },
    "Group": {
        "displayName": ("[displayName]", "Attribute", "displayName"),
        "members": ("[members]", "Attribute", "members"),
    },
}
OBJECT_MAPPING = "Provision Microsoft Entra ID {}s"


def _attribute(target: str, expression: str, kind: str, name: str) -> dict[str, Any]:
    return {
        "defaultValue": None,
        "exportMissingReferences": False,
        "flowBehavior": "FlowWhenChanged",
        "flowType": "Always",
        "matchingPriority": 1 if target in {"userName", "displayName"} else 0,
        "source": {"expression": expression, "name": name, "parameters": [], "type": kind},
        "targetAttributeName": target,
    }


def _directory(name: str, objects: dict[str, list[str]]) -> dict[str, Any]:
    return {
        "id": name.replace(" ", ""),
        "name": name,
        "objects": [
            {"name": obj, "attributes": [{"name": a, "type": "String"} for a in attrs]}
            for obj, attrs in objects.items()
        ],
    }


def build(job_id: str, target_name: str, targets: dict[str, list[str]]) -> dict[str, Any]:
    mappings = []
    for obj, attrs in targets.items():
        if obj not in SOURCE_OBJECTS:
            continue
        defaults = DEFAULTS.get(obj, {})
        mappings.append(
            {
                "enabled": True,
                "flowTypes": "Add, Update, Delete",
                "metadata": [{"key": "IsCustomerDefined", "value": "false"}],
                "name": OBJECT_MAPPING.format(obj),
                "scope": None,
                "sourceObjectName": obj,
                "targetObjectName": obj,
                "attributeMappings": [_attribute(t, *defaults[t]) for t in attrs if t in defaults],
            }
        )
    return {
        "id": job_id,
        "version": "Date:2024-01-01T00:00:00Z~###~Version:1",
        "directories": [_directory(SOURCE, SOURCE_OBJECTS), _directory(target_name, targets)],
        "synchronizationRules": [
            {
                "id": job_id.split(".")[0],
                "name": f"{SOURCE} to {target_name}",
                "sourceDirectoryName": SOURCE,
                "targetDirectoryName": target_name,
                "objectMappings": mappings,
            }
        ],
    }


def _objects(schema: dict[str, Any], directory: str) -> dict[str, set[str]]:
    for d in schema.get("directories") or []:
        if d.get("name") == directory:
            return {o["name"]: {a["name"] for a in o.get("attributes", [])} for o in d["objects"]}
    raise bad_request(f"The directory '{directory}' is not defined in the schema.")


def validate(stored: dict[str, Any], body: dict[str, Any]) -> None:
    """Graph-style 400 for a schema naming objects or attributes its directories lack."""
    rules = body.get("synchronizationRules")
    if not isinstance(rules, list):
        raise bad_request("The schema must contain 'synchronizationRules'.")
    for rule in rules:
        source = _objects(stored, str(rule.get("sourceDirectoryName")))
        target = _objects(stored, str(rule.get("targetDirectoryName")))
        for om in rule.get("objectMappings") or []:
            name = om.get("name")
            tgt, src = om.get("targetObjectName"), om.get("sourceObjectName")
            if tgt not in target or src not in source:
                raise bad_request(
                    f"Object mapping '{name}' maps '{src}' to '{tgt}', which the schema's "
                    "directories do not define."
                )
            for am in om.get("attributeMappings") or []:
                attr = am.get("targetAttributeName")
                if attr not in target[tgt]:
                    raise bad_request(
                        f"Attribute '{attr}' is not defined on object '{tgt}' of directory "
                        f"'{rule.get('targetDirectoryName')}' (object mapping '{name}')."
                    )
                src_def = am.get("source") or {}
                if src_def.get("type") == "Attribute" and src_def.get("name") not in source[src]:
                    raise bad_request(
                        f"Source attribute '{src_def.get('name')}' is not defined on object "
                        f"'{src}' of directory '{rule.get('sourceDirectoryName')}'."
                    )


class SchemaStore:
    def __init__(self, stats: Counter[str]) -> None:
        self.by_job: dict[str, dict[str, Any]] = {}
        self.puts: Counter[str] = Counter()
        self.stats = stats
        self._versions: Counter[str] = Counter()

    def get(self, job_id: str, target_name: str, targets: dict[str, list[str]]) -> dict[str, Any]:
        if job_id not in self.by_job:
            self.by_job[job_id] = build(job_id, target_name, targets)
        return copy.deepcopy(self.by_job[job_id])

    def mappings_json(self) -> dict[str, dict[str, str | None]]:
        """Per job: ``objectMapping.target`` -> its source expression (for the tests)."""
        out: dict[str, dict[str, str | None]] = {}
        for job_id, schema in self.by_job.items():
            found = out.setdefault(job_id, {})
            for rule in schema.get("synchronizationRules") or []:
                for om in rule.get("objectMappings") or []:
                    for am in om.get("attributeMappings") or []:
                        source = am.get("source") or {}
                        key = f"{om.get('name')}.{am.get('targetAttributeName')}"
                        found[key] = source.get("expression")
        return out

    def put(
        self, job_id: str, target_name: str, targets: dict[str, list[str]], body: dict[str, Any]
    ) -> None:
        stored = self.get(job_id, target_name, targets)
        validate(stored, body)
        self._versions[job_id] += 1
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        new = {**copy.deepcopy(body), "id": job_id}
        new["directories"] = stored["directories"]  # the directories are not ours to change
        new["version"] = f"Date:{stamp}~###~Version:{self._versions[job_id] + 1}"
        self.by_job[job_id] = new
        self.puts[job_id] += 1
        self.stats["schema_puts"] += 1
