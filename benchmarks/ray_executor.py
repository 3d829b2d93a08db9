"""The Ray executor against the local (threads) one on the same work, and 1 against 2 Ray workers.

Each configuration is a fresh `asrfair run` process, so Ray's figures include starting a local Ray
instance (it is reported on its own too). Work:
  - pocketsphinx on the bundled demo (120 utterances), clean: CPU-bound transcription;
  - replay of --replay-rows utterances (benchmarks/.data, made by scale.py): no transcription at all,
    so what remains is the executor's own cost.
Rows are checked identical across configurations (sorted by utterance and condition).

  python benchmarks/ray_executor.py [--replay-rows 100000]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def run(args: list[str], out: Path) -> tuple[float, float]:
    """(process wall seconds, the run's own seconds as it reports them)."""
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "harness.cli", "run", *args, "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{result.stderr[-3000:]}")
    own = re.search(r"transcribed in ([0-9.]+) s", result.stderr)
    return wall, float(own.group(1)) if own else float("nan")


def rows(out: Path) -> list[tuple]:
    import pyarrow.parquet as pq

    table = pq.read_table(out / "utterances.parquet", columns=["utterance_id", "condition_key", "hypothesis", "errors"])
    return sorted(zip(*(table.column(name).to_pylist() for name in table.column_names)))


def ray_start_s() -> float:
    code = "import time, ray; t = time.perf_counter(); ray.init(num_cpus=os.cpu_count(), include_dashboard=False); print(time.perf_counter() - t); ray.shutdown()"
    out = subprocess.run([sys.executable, "-c", "import os\n" + code.replace("; ", "\n")], capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replay-rows", type=int, default=100_000)
    parser.add_argument("--work", type=Path, default=HERE / ".data" / "ray")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    demo = ["manifests/demo/manifest.jsonl", "--backend", "pocketsphinx"]
    manifest = HERE / ".data" / f"manifest-{args.replay_rows}.jsonl"
    hyps = HERE / ".data" / f"hyps-a-{args.replay_rows}.tsv"
    if not manifest.exists():
        raise SystemExit(f"{manifest} not found: make it with `python benchmarks/scale.py --sizes {args.replay_rows} --only run`.")
    replay = [str(manifest), "--backend", "replay", "--backend-arg", f"hypotheses={hyps}"]
    cpus = os.cpu_count() or 1
    configurations = [
        ("pocketsphinx, threads (one backend)", demo + ["--backend-arg", "processes=1"], "demo-threads"),
        ("pocketsphinx, ray, 1 worker", demo + ["--backend-arg", "processes=1", "--executor", "ray", "--workers", "1"], "demo-ray1"),
        ("pocketsphinx, ray, 2 workers", demo + ["--backend-arg", "processes=1", "--executor", "ray", "--workers", "2"], "demo-ray2"),
        (f"replay {args.replay_rows:,}, threads", replay, "replay-threads"),
        (f"replay {args.replay_rows:,}, ray, 1 worker", replay + ["--executor", "ray", "--workers", "1"], "replay-ray1"),
        (f"replay {args.replay_rows:,}, ray, 2 workers", replay + ["--executor", "ray", "--workers", "2"], "replay-ray2"),
    ]
    results = []
    for label, command, name in configurations:
        wall, own = run(command, args.work / name)
        results.append((label, wall, own, name))
        print(f"{label}: {wall:.1f} s ({own:.1f} s in the run)", file=sys.stderr, flush=True)
    for prefix in ("demo", "replay"):
        reference = rows(args.work / f"{prefix}-threads")
        for other in ("ray1", "ray2"):
            if rows(args.work / f"{prefix}-{other}") != reference:
                raise SystemExit(f"{prefix}-{other} rows differ from {prefix}-threads")
    start = ray_start_s()
    print(f"Machine: {platform.node()}, {cpus} CPUs, Python {platform.python_version()}. Starting a local Ray instance: {start:.1f} s.\n")
    print("| work | process wall | the run itself |\n|---|---:|---:|")
    for label, wall, own, _ in results:
        print(f"| {label} | {wall:.1f} s | {own:.1f} s |")
    print("\nRows identical across executors and worker counts: yes.")


if __name__ == "__main__":
    main()
