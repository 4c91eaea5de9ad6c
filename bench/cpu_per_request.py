"""Server CPU per request of the throughput scenario, from results JSON files.

The table prints the server's CPU as a share of one core, which moves with whatever else
loads the machine; CPU time per request served moves much less, so it is the figure to
compare two versions of a serving path by:

    python -m bench.cpu_per_request bench/results/A.json bench/results/B.json ...

(no argument: the five newest results). The meter's window runs until the last
delivery, a few milliseconds past the requests' window: the figure is a slight
overestimate of CPU per request, the same for every version.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def per_request(path: Path) -> dict[str, float]:
    """µs of server CPU per request, by throughput run (`single C=8`, `batch 100 C=8`)."""
    found: dict[str, float] = {}
    data: dict[str, Any] = json.loads(path.read_text())
    for phase in data["results"].get("notifier", {}).get("phases", []):
        for scenario in phase["scenarios"]:
            if scenario["name"] != "throughput":
                continue
            for run in scenario["runs"]:
                if not run["persisted_per_s"]:
                    continue
                kind = "single" if run["batch"] == 1 else f"batch {run['batch']}"
                requests_per_s = run["persisted_per_s"] / run["batch"]
                found[f"{kind} C={run['concurrency']}"] = (
                    run["cpu"]["server"] / requests_per_s * 1e6
                )
    return found


def main(argv: list[str]) -> None:
    paths = [Path(a) for a in argv] or sorted(RESULTS.glob("*.json"))[-5:]
    by_run: dict[str, list[float]] = {}
    for path in paths:
        figures = per_request(path)
        print(path.name, "  ".join(f"{k}: {v:,.0f} µs" for k, v in figures.items()))
        for kind, value in figures.items():
            by_run.setdefault(kind, []).append(value)
    for kind, values in by_run.items():
        print(
            f"{kind}: median {statistics.median(values):,.0f} µs of server CPU per request, "
            f"spread {min(values):,.0f}..{max(values):,.0f} over {len(values)} runs"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
