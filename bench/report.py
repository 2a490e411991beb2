"""What the benchmark scripts share: a calls-per-second timer and the report printer."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping


def arguments(doc: str | None) -> argparse.Namespace:
    """The options every benchmark takes: ``--seconds`` per measurement and ``--json``."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", action="store_true")
    return parser.parse_args()


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
