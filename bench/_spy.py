"""Where a system's time goes in a measured window: py-spy, attached for that window only.

With `--py-spy DIR` (py-spy installed: `pip install py-spy`), the fan-out burst and the
steady-state resync window of every system are sampled by `py-spy record --format raw`
(collapsed stacks: `frame;frame;...;leaf count` per line), which costs the sampled process
almost nothing, unlike cProfile (`--profile`), which slows it several times over and covers
its whole life. `summarize` turns a collapsed file into the two lists worth reading: where
the samples were (leaf functions) and which functions they were under (inclusive).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

SPY_DIR: Path | None = None
"""When set (`--py-spy DIR`), measured windows are sampled and summarised here."""


def _executable() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.asynccontextmanager
async def sampled(pid: int, name: str) -> AsyncIterator[None]:
    """Sample process `pid` while the block runs (when `--py-spy` was given)."""
    executable = _executable()
    if SPY_DIR is None or executable is None:
        yield
        return
    SPY_DIR.mkdir(parents=True, exist_ok=True)
    output = SPY_DIR / f"{name}.txt"
    argv = [executable, "record", "--pid", str(pid), "--rate", "200", "--format", "raw"]
    argv += ["--output", str(output), "--nonblocking"]  # never pause the sampled process
    spy = await asyncio.to_thread(
        subprocess.Popen,
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(0.3)  # py-spy attaches
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(spy.wait, 20)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
    if output.exists():
        (SPY_DIR / f"{name}.summary.txt").write_text(summarize(output))


def _short(frame: str) -> str:
    """`function (path/to/module.py:line)` -> `function (module.py)`."""
    function, _, where = frame.partition(" (")
    module = where.rsplit("/", 1)[-1].split(":")[0]
    return f"{function} ({module})" if module else function


def summarize(path: Path, top: int = 15) -> str:
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_short(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        leaves[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples\n"
    lines = [f"{total} samples", "", "where the samples were (leaf, % of samples):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in leaves.most_common(top)]
    lines += ["", "under which functions (inclusive, % of samples):"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(top * 2)]
    return "\n".join(lines) + "\n"
