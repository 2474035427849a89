"""The failure codes of the onboarding steps (issue 13); each ends the request ``failed``
with its code, message and Graph ids (docs/runbook.md has one section per code)."""

from __future__ import annotations

from service.core.errors import WorkflowFailed


class GalleryAppNotFound(WorkflowFailed):
    """No provisionable gallery template has the requested ``galleryName``."""

    code = "GalleryAppNotFound"


class GalleryAppAmbiguous(WorkflowFailed):
    """Several provisionable gallery templates have that name: pass applicationTemplateId."""

    code = "GalleryAppAmbiguous"


class AppNotReplicated(WorkflowFailed):
    """The new principal still answered 404 / 401 when its replication budget ended."""

    code = "AppNotReplicated"


class AppRoleAmbiguous(WorkflowFailed):
    """An assignment names no appRoleId and the app has no single default user role."""

    code = "AppRoleAmbiguous"


class AssignmentRejected(WorkflowFailed):
    """Graph refused an app role assignment (400: unknown principal or role)."""

    code = "AssignmentRejected"


class ObjectMappingNotFound(WorkflowFailed):
    """An attribute mapping names an object mapping the job's schema does not have."""

    code = "ObjectMappingNotFound"


class SchemaRejected(WorkflowFailed):
    """Graph answered 400 to the schema PUT; its message says which mapping it refused."""

    code = "SchemaRejected"
