"""Faults of the gallery endpoints (the ``gallery`` part of the fault profile). Pure."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class GalleryFaults(BaseModel):
    """What instantiate and the new principals do wrong.

    - ``lost_instantiate_rate``: the app is made, then the connection is dropped (no answer).
    - ``instantiate_5xx_rate``: the app is made, then 500 or 503 (alternately) is answered.
    - ``instantiate_delay_ms``: the app is made at once, the answer waits this long (a worker
      can be killed while its call is in flight).
    - ``new_principal_lag_ms``: a new principal answers 404 (``GET /servicePrincipals/{id}``,
      ``appRoleAssignedTo``) and 401 ``UnknownError`` (synchronization) for this long.
    - ``principal_list_lag_ms``: a new principal is missing from ``GET /servicePrincipals``
      for this long.
    """

    model_config = ConfigDict(extra="forbid")

    lost_instantiate_rate: float = Field(default=0, ge=0, le=1)
    instantiate_5xx_rate: float = Field(default=0, ge=0, le=1)
    instantiate_delay_ms: float = Field(default=0, ge=0)
    new_principal_lag_ms: float = Field(default=0, ge=0)
    principal_list_lag_ms: float = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _sum(self) -> GalleryFaults:
        if self.lost_instantiate_rate + self.instantiate_5xx_rate > 1 + 1e-9:
            raise ValueError("lost_instantiate_rate + instantiate_5xx_rate must be at most 1")
        return self
