"""What the benchmark scripts share: a calls-per-second timer and the report printer."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping, Sequence


def arguments(
    doc: str | None, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> argparse.Namespace:
    """The options every benchmark takes: ``--seconds`` per measurement and ``--json``
    (``extra`` adds a benchmark's own)."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) of ``samples``, linear between the nearest ranks."""
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def rate(fn: Callable[[], object], seconds: float, *, batch: int = 1) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (``batch`` calls between clock reads)."""
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(batch):
            fn()
        n += batch
    return n / elapsed


def report(out: Mapping[str, object], *, as_json: bool) -> None:
    """Print the results: JSON, or one aligned ``name value`` line each."""
    if as_json:
        print(json.dumps(out, indent=2, ensure_ascii=False))
        return
    width = max((len(k) for k in out), default=0)
    for key, value in out.items():
        print(f"{key:<{width}}  {value}")
