"""Tables, ratios, targets and JSON: how every workload reports.

A table has one row per figure and one column per system under test, then the ratios the
issue asks for: carm/floor (how close carm comes to the test bed's limit) and peer/carm for
each peer (carm with ACK's defaults, kopf). Ratios are plain quotients of the two figures, so
their meaning follows the figure: for a throughput carm/floor 0.9 is 90 % of the floor's
throughput; for AWS calls per bucket kopf/carm 2.0 is twice carm's calls.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PEERS = ("carm-ack", "kopf")

Value = float | int | str | None


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str
    digits: int = 1


LOAD = Row("load_1m", "machine load (1-min average) at its start", "", 1)
"""Printed under every table: these machines are shared, and a busy one slows everything."""


@dataclass
class Target:
    text: str
    met: bool | None
    detail: str

    def line(self) -> str:
        mark = {True: "met", False: "MISSED", None: "n/a"}[self.met]
        return f"  target: {self.text}: {mark} ({self.detail})"


@dataclass
class Table:
    workload: str
    title: str
    rows: list[Row]
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    """system name -> figures (row key -> value), plus any extra detail."""
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def ratio(self, key: str, numerator: str, denominator: str) -> float | None:
        top = _number(self.results.get(numerator, {}).get(key))
        bottom = _number(self.results.get(denominator, {}).get(key))
        if top is None or bottom is None:
            return None
        if bottom == 0:
            return None if top == 0 else math.inf
        return top / bottom

    def ratio_columns(self) -> list[tuple[str, str, str]]:
        columns = []
        if "carm" in self.results and "floor" in self.results:
            columns.append(("carm/floor", "carm", "floor"))
        for peer in PEERS:
            if peer in self.results and "carm" in self.results:
                columns.append((f"{peer}/carm", peer, "carm"))
        return columns

    def render(self) -> str:
        systems = list(self.results)
        ratios = self.ratio_columns()
        rows = self.rows + ([LOAD] if any("load_1m" in r for r in self.results.values()) else [])
        width = max(len(r.label) + len(r.unit) + 3 for r in rows)
        head = f"{'':<{width}}" + "".join(f"{s:>12}" for s in systems)
        head += "".join(f"{name:>14}" for name, _, _ in ratios)
        lines = [f"== {self.title}", head, "-" * len(head)]
        for row in rows:
            label = f"{row.label} ({row.unit})" if row.unit else row.label
            line = f"{label:<{width}}"
            for system in systems:
                line += f"{_format(self.results[system].get(row.key), row.digits):>12}"
            if row is not LOAD:
                for _, top, bottom in ratios:
                    line += f"{_format_ratio(self.ratio(row.key, top, bottom)):>14}"
            lines.append(line)
        lines += [target.line() for target in self.targets]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)

    def document(self) -> dict[str, Any]:
        ratios = {
            name: {row.key: self.ratio(row.key, top, bottom) for row in self.rows}
            for name, top, bottom in self.ratio_columns()
        }
        return {
            "workload": self.workload,
            "title": self.title,
            "results": self.results,
            "ratios": ratios,
            "targets": [vars(t) for t in self.targets],
            "notes": self.notes,
        }


def _number(value: Value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _format(value: Value, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return f"{value:,.{digits}f}"


def _format_ratio(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:.2f}"


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of `values`; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def machine() -> dict[str, Any]:
    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True, check=False).stdout
    return {
        "nproc": os.cpu_count(),
        "uname": uname.strip(),
        "python": platform.python_version(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def write_json(name: str, document: dict[str, Any], directory: Path = RESULTS_DIR) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    payload = {"machine": machine()} | document
    path.write_bytes(orjson.dumps(payload, option=orjson.OPT_INDENT_2) + b"\n")
    return path
