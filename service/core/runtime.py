"""Process-wide tuning shared by the API and the workers: the garbage collector's pace.

CPython collects its youngest generation every 700 allocations, and each collection of an
older one walks every tracked object. A worker holding a thousand workflows in flight (records,
responses, tasks) paid that in event-loop stalls: loop lag p99 54 ms and 1 ms CPU per request
more than with these settings (docs/benchmarks.md, D). Reference counting still frees almost
everything at once; only cyclic garbage waits a little longer.
"""

from __future__ import annotations

import gc

#: gc.set_threshold's (Python's: 700, 10, 10): a young pass every 20,000 allocations.
GC_THRESHOLDS = (20_000, 20, 20)


def tune_gc() -> None:
    """Call once start-up has built what lives as long as the process (modules, settings,
    clients): those are frozen out of every later collection, which then comes less often."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
