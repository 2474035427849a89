"""Writing results: one section of docs/benchmarks.md per benchmark, between markers, and PNGs.

Each benchmark owns the text between ``<!-- bench:NAME:begin -->`` and ``<!-- bench:NAME:end -->``
and rewrites only that, so benchmarks can be re-run one at a time.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
PLOTS = REPO / "docs" / "benchmarks"
PROFILES = REPO / "benchmarks" / "profiles"  # pyinstrument text reports

HEADER = """# Benchmarks

Reproducible load runs of the whole service on one machine, loopback only: Redis, the sandbox
(the Graph + Entra simulator, `docs/sandbox.md`), the intake API and arq workers as separate
processes. Each section below is written by its own make target (`make bench-<name>`) and
rewritten on every run of it; the code is in `benchmarks/`.

**Read ratios, not absolute times.** The machine these numbers come from has **2 cores** and was
**shared** with other work while they were measured: absolute times move from run to run. Every
comparison below (coordination on/off, SDK vs naive vs ours, AOF modes, 1/2/4/8 workers) was
measured within the same run, one configuration after the other, so the ratios are what to
quote. The sandbox, Redis, the API and all workers share those 2 cores: a run is bounded by CPU
long before it would be on a real deployment.
"""


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores (shared), "
        f"Python {platform.python_version()}, load average at the end "
        f"{load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}"
    )


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of ``rows`` (dicts sharing keys)."""
    if not rows:
        return "(no rows)\n"
    cols = list(columns or rows[0].keys())
    out = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        out.append("| " + " | ".join(str(row.get(c, "")) for c in cols) + " |")
    return "\n".join(out) + "\n"


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``name`` of docs/benchmarks.md."""
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    text = DOC.read_text() if DOC.exists() else HEADER
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    DOC.write_text(text)


def state_dir() -> Path:
    """The repository's ``.state/`` (git-ignored), created when missing (a fresh clone has none)."""
    path = REPO / ".state"
    path.mkdir(parents=True, exist_ok=True)
    return path


def plot_path(name: str) -> Path:
    PLOTS.mkdir(parents=True, exist_ok=True)
    return PLOTS / f"{name}.png"


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
