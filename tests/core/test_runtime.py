"""service/core/runtime.py: the collector's pace, as both processes set it at start-up."""

from __future__ import annotations

import gc

from service.core.runtime import GC_THRESHOLDS, tune_gc


def test_start_up_objects_are_frozen_and_collections_come_less_often() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > before[0]
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
