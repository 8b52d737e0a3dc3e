"""Wall time of a repeated shell query, ``lookalike similar NAME --sample ID``, each a fresh process as a user or a
script runs it: with no warm process (``LOOKALIKE_WARM_SECONDS=0``, as before there was one) and with one (the first
query leaves it behind).

    python benchmarks/cli_latency.py [--name fashion-mnist-demo] [--repeat 5]

The dataset must exist and be embedded (``./scripts/demo.sh`` makes fashion-mnist-demo). Writes
benchmarks/results/cli_latency.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from common import cpu, write_results

LOOKALIKE = str(Path(sys.executable).parent / "lookalike")


def timed(argv: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def stop_warm_process() -> None:
    """The one this run left (the CLI's: same interpreter and settings), not a user's others."""
    import psutil

    from lookalike.warm import socket_path

    path = str(socket_path())
    for process in psutil.process_iter(["cmdline"]):
        if path in " ".join(process.info["cmdline"] or []):
            process.terminate()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="fashion-mnist-demo")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    sample = subprocess.run([sys.executable, "-c", "import fiftyone as fo, sys; "
                             f"print(fo.load_dataset({args.name!r}).first().id)"], check=True, capture_output=True,
                            text=True).stdout.split()[-1]
    query = [LOOKALIKE, "similar", args.name, "--sample", sample, "-k", "5"]
    print(f"CPU: {cpu()}; {' '.join(query[1:])}")
    results = {}
    for label, seconds in (("no warm process", "0"), ("warm process", "600")):
        env = {**os.environ, "LOOKALIKE_WARM_SECONDS": seconds}
        walls = []
        for _ in range(args.repeat):
            walls.append(timed(query, env))
            time.sleep(2)  # a user's pause between queries (the warm process gets up in it)
        results[label] = walls
        print(f"  {label:<16} " + " ".join(f"{w:.2f}" for w in walls) + " s")
    stop_warm_process()
    write_results("cli_latency", {"cpu": cpu(), "query": query[1:], "seconds": results})


if __name__ == "__main__":
    main()
