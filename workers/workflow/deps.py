"""What a workflow run is given (:class:`Deps`) and what a step reports (:class:`StepResult`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.core.models import Outcome
from service.core.settings import Settings
from service.core.store import Store
from service.core.store_save import Release
from workers.graph.client import GraphClient
from workers.graph.response import GraphResponse
from workers.metrics import WorkerMetrics
from workers.workflow.throttle import Throttle


@dataclass(frozen=True, slots=True)
class Deps:
    """What a run needs; built once per worker process in ``on_startup``."""

    settings: Settings
    store: Store
    graph: GraphClient
    throttle: Throttle
    stopping: Callable[[], bool] = lambda: False
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)


@dataclass(slots=True)
class StepResult:
    """What a step reports for the history line."""

    outcome: Outcome = Outcome.SUCCEEDED
    response: GraphResponse[Any] | None = None
    message: str | None = None
    silent: bool = False  # a step the request does not use: no history line (onboarding)
    release: Release | None = None  # written with the step's save (the create claim's end)
