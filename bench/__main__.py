"""`python -m bench WORKLOAD [ARGS...]`: runs one benchmark; `python -m bench all` runs them all.

Every module (not subpackage) of this package whose name does not start with `_` is a
workload; it exposes `main(argv: list[str]) -> int`. Adding a workload is adding a module:
nothing here changes. Helpers go in `_`-prefixed modules or in subpackages.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def workloads() -> list[str]:
    here = [str(Path(__file__).resolve().parent)]
    return sorted(
        m.name for m in pkgutil.iter_modules(here) if not m.ispkg and not m.name.startswith("_")
    )


def main(argv: list[str]) -> int:
    available = workloads()
    if argv and argv[0] == "all":  # every workload in one run (bench/_all.py)
        from bench._all import main as run_all

        return run_all(argv[1:])
    if not argv or argv[0] not in available:
        choices = ",".join([*available, "all"])
        print(f"usage: python -m bench {{{choices}}} [--quick] [ARGS...]", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{argv[0]}")
    code: int = module.main(argv[1:])
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
