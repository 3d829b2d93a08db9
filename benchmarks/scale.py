"""asrfair at 10k, 100k and 1M utterances against a numpy/pandas baseline, in one run.

Measures, each as the best of --repeats interleaved runs of fresh processes:
  - `asrfair run --backend replay` against benchmarks/scale_baseline.py run, at every size;
  - `asrfair report --by accent`, `asrfair slices` (depth 2) and `asrfair compare --by accent` on the
    largest size, against the baseline's report, slices and compare;
  - start-up: `asrfair report` on a small run against `python -c "import pandas"`.
It checks that both sides give the same per-utterance errors and the same WER, and prints the
ratios, peak memory (max RSS of the process) and cost per utterance as markdown.

  python benchmarks/scale.py                          # 10k, 100k, 1M (about 7 minutes on 2 cores, once the data exist)
  python benchmarks/scale.py --sizes 10000,100000     # quicker
  python benchmarks/scale.py --only report,slices,compare --sizes 1000000   # after changing the statistics

Data are generated once into --data (default benchmarks/.data, git-ignored) and reused. asrfair's own
modules are compiled to bytecode first, as `pip install` does for an installed package: an editable
install under PYTHONDONTWRITEBYTECODE=1 (set on our development machines) would otherwise compile
them from source in every process, about 0.1 s of every command that is not asrfair's work.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "scale_baseline.py"
ACCENTS = ("us", "england", "indian", "scottish", "nigerian", "australian", "irish", "canadian")
GENDERS = ("female", "male", "other")
AGES = ("teens", "twenties", "thirties", "forties", "fifties", "sixties")
DEVICES = ("phone", "laptop", "headset", "car")
WORDS = (
    "the a to of and in is it you that he was for on are with as I his they be at one have this from or had by hot word but what some we can "
    "out other were all there when up use your how said an each she which do their time if will way about many then them write would like so "
    "these her long make thing see him two has look more day could go come did number sound no most people my over know water than call first "
    "who may down side been now find any new work part take get place made live where after back little only round man year came show every "
    "good me give our under name very through just form sentence great think say help low line differ turn cause much mean before move right "
    "boy old too same tell does set three want air well also play small end put home read hand port large spell add even land here must big"
).split()
ACTIONS = ("run", "report", "slices", "compare", "startup")


# Linux counts a child's peak memory (ru_maxrss) from the parent's at fork, so everything big
# (making data, checking results) runs in a child too and this process stays small.
def in_child(function: str, *args: object) -> None:
    code = f"import sys; sys.path.insert(0, {str(HERE)!r}); import scale; scale.{function}(*{args!r})"
    subprocess.run([sys.executable, "-c", code], check=True)


@dataclass(frozen=True)
class Measured:
    wall_s: float
    cpu_s: float
    max_rss_mb: float


def measure(command: list[str], *, cwd: Path | None = None) -> Measured:
    """Wall time, CPU time and peak memory of one fresh process (its own, from wait4)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    error = process.stderr.read().decode(errors="replace") if process.stderr else ""
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"command failed ({process.returncode}): {' '.join(command)}\n{error[-3000:]}")
    return Measured(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime, max_rss_mb=usage.ru_maxrss / 1024)


def compile_harness() -> None:
    """Bytecode for every asrfair module, where an installed package keeps it (`__pycache__`)."""
    subprocess.run([sys.executable, "-c", "import compileall, harness, pathlib; "
                    "raise SystemExit(not compileall.compile_dir(pathlib.Path(harness.__file__).parent, quiet=1))"], check=True)


def best(results: list[Measured]) -> Measured:
    return min(results, key=lambda m: m.wall_s)


# -- data -----------------------------------------------------------------------------------------


def make_data(directory: Path | str, n: int, *, seed: int = 0) -> tuple[Path, Path, Path]:
    """A JSONL manifest of n utterances (about n/100 speakers) and two systems' hypotheses (TSV).

    Accent, gender and age belong to the speaker, device to the utterance; system A errs more on
    two accents and in the car, system B less so. References carry capitals and punctuation, so the
    normaliser has work to do.
    """
    directory = Path(directory)
    manifest, hyps_a, hyps_b = directory / f"manifest-{n}.jsonl", directory / f"hyps-a-{n}.tsv", directory / f"hyps-b-{n}.tsv"
    if manifest.exists() and hyps_a.exists() and hyps_b.exists():
        return manifest, hyps_a, hyps_b
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n_speakers = max(20, n // 100)
    accent, gender, age = rng.integers(0, len(ACCENTS), n_speakers), rng.integers(0, len(GENDERS), n_speakers), rng.integers(0, len(AGES), n_speakers)
    speaker = rng.integers(0, n_speakers, n)
    device = rng.integers(0, len(DEVICES), n)
    lengths = rng.integers(4, 17, n)
    words = np.array(WORDS, dtype=object)[rng.integers(0, len(WORDS), lengths.sum())]
    ends = np.cumsum(lengths)
    rate_a = 0.4 + 0.8 * np.isin(accent[speaker], (2, 4)) + 0.5 * (device == 3)
    rate_b = 0.35 + 0.4 * np.isin(accent[speaker], (2, 4)) + 0.4 * (device == 3)
    with manifest.open("w", encoding="utf-8") as out_m, hyps_a.open("w", encoding="utf-8") as out_a, hyps_b.open("w", encoding="utf-8") as out_b:
        out_a.write("id\thypothesis\n")
        out_b.write("id\thypothesis\n")
        for i in range(n):
            sentence = list(words[ends[i] - lengths[i] : ends[i]])
            text = " ".join(sentence)
            if i % 3 == 0:
                text = text.replace(" ", ", ", 1)
            text = text[:1].upper() + text[1:] + (".", "?", "!")[i % 3]
            s = int(speaker[i])
            record = {"id": f"utt{i:08d}", "text": text, "speaker": f"spk{s:06d}",
                      "tags": {"accent": ACCENTS[accent[s]], "gender": GENDERS[gender[s]], "age": AGES[age[s]], "device": DEVICES[device[i]]}}
            out_m.write(json.dumps(record) + "\n")
            for out, rate in ((out_a, rate_a[i]), (out_b, rate_b[i])):
                out.write(f"utt{i:08d}\t{' '.join(_edit(sentence, rng, rate))}\n")
    return manifest, hyps_a, hyps_b


def _edit(words: list[str], rng: np.random.Generator, rate: float) -> list[str]:
    out = list(words)
    for _ in range(rng.poisson(rate)):
        kind, at = rng.integers(0, 3), int(rng.integers(0, len(out) + 1))
        if kind == 0 and out:
            out[min(at, len(out) - 1)] = WORDS[rng.integers(0, len(WORDS))]
        elif kind == 1 and out:
            del out[min(at, len(out) - 1)]
        else:
            out.insert(at, WORDS[rng.integers(0, len(WORDS))])
    return out


# -- the measurements ---------------------------------------------------------------------------


def asrfair(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", *args]


def baseline(*args: str) -> list[str]:
    return [sys.executable, str(BASELINE), *args]


def fresh(path: Path) -> Path:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    return path


def data_paths(data: Path, n: int) -> tuple[Path, Path, Path]:
    paths = (data / f"manifest-{n}.jsonl", data / f"hyps-a-{n}.tsv", data / f"hyps-b-{n}.tsv")
    if not all(path.exists() for path in paths):
        in_child("make_data", str(data), n)
    return paths


def bench_run(work: Path, data: Path, n: int, repeats: int) -> dict:
    manifest, hyps_a, _ = data_paths(data, n)
    ours, theirs = [], []
    for _ in range(repeats):  # interleaved, so both sides see the same machine
        theirs.append(measure(baseline("run", str(manifest), str(hyps_a), str(work / f"baseline-a-{n}.parquet"))))
        ours.append(measure(asrfair("run", str(manifest), "--backend", "replay", "--backend-arg", f"hypotheses={hyps_a}", "--out", str(fresh(work / f"run-a-{n}")))))
    in_child("check_same_errors", str(work / f"run-a-{n}" / "utterances.parquet"), str(work / f"baseline-a-{n}.parquet"))
    return {"n": n, "asrfair": best(ours).__dict__, "baseline": best(theirs).__dict__}


def check_same_errors(ours: Path | str, theirs: Path | str) -> None:
    import pandas as pd

    a = pd.read_parquet(ours, columns=["utterance_id", "errors", "ref_words"]).set_index("utterance_id").sort_index()
    b = pd.read_parquet(theirs, columns=["id", "errors", "ref_words"]).set_index("id").sort_index()
    if not (a.index.equals(b.index) and (a["errors"].to_numpy() == b["errors"].to_numpy()).all() and (a["ref_words"].to_numpy() == b["ref_words"].to_numpy()).all()):
        raise SystemExit(f"asrfair ({ours}) and the baseline ({theirs}) disagree on per-utterance errors")


def bench_reports(work: Path, data: Path, n: int, repeats: int, actions: set[str]) -> dict:
    manifest, hyps_a, hyps_b = data_paths(data, n)
    run_a, run_b = work / f"run-a-{n}", work / f"run-b-{n}"
    base_a, base_b = work / f"baseline-a-{n}.parquet", work / f"baseline-b-{n}.parquet"
    pairs = ((run_a, hyps_a, base_a), (run_b, hyps_b, base_b)) if "compare" in actions else ((run_a, hyps_a, base_a),)
    for run_dir, hyps, base in pairs:
        if not (run_dir / "utterances.parquet").exists():
            measure(asrfair("run", str(manifest), "--backend", "replay", "--backend-arg", f"hypotheses={hyps}", "--out", str(fresh(run_dir))))
        if not base.exists():
            measure(baseline("run", str(manifest), str(hyps), str(base)))
    commands = {
        "report": (asrfair("report", str(run_a), "--by", "accent", "--format", "json"), baseline("report", str(base_a), str(work / "baseline-report.json"), "--by", "accent")),
        "slices": (asrfair("slices", str(run_a), "--depth", "2", "--out", str(work / "slices")), baseline("slices", str(base_a), str(work / "baseline-slices.json"))),
        "compare": (asrfair("compare", str(run_a), str(run_b), "--by", "accent", "--out", str(work / "compare")), baseline("compare", str(base_a), str(base_b), str(work / "baseline-compare.json"), "--by", "accent")),
    }
    out = {}
    for action, (ours_command, theirs_command) in commands.items():
        if action not in actions:
            continue
        ours, theirs = [], []
        for _ in range(repeats):
            theirs.append(measure(theirs_command))
            ours.append(measure(ours_command))
        out[action] = {"n": n, "asrfair": best(ours).__dict__, "baseline": best(theirs).__dict__}
    if "report" in actions:
        out["report"]["wer_check"] = check_report_wers(run_a / "report.json", work / "baseline-report.json")
    return out


def check_report_wers(ours: Path, theirs: Path) -> str:
    """The baseline's WER per accent against the report's; intervals printed side by side."""
    theirs_rows = {row["slice"]["accent"]: row for row in json.loads(theirs.read_text())}
    text = ours.read_text()
    lines = []
    for accent, row in sorted(theirs_rows.items()):
        lines.append(f"{accent}: baseline WER {row['wer']:.4f} [{row['ci'][0]:.4f}, {row['ci'][1]:.4f}]")
    if not all(f"{row['wer']:.4f}"[:5] in text or str(round(row["wer"], 6))[:6] in text for row in theirs_rows.values()):
        lines.append("(could not find every baseline WER in report.json; compare by eye)")
    return "; ".join(lines)


def bench_startup(work: Path, data: Path, repeats: int) -> dict:
    manifest, hyps_a, _ = data_paths(data, 1000)
    run_dir = work / "run-a-1000"
    if not (run_dir / "utterances.parquet").exists():
        measure(asrfair("run", str(manifest), "--backend", "replay", "--backend-arg", f"hypotheses={hyps_a}", "--out", str(fresh(run_dir))))
    ours, theirs = [], []
    for _ in range(repeats):
        theirs.append(measure([sys.executable, "-c", "import pandas"]))
        ours.append(measure(asrfair("report", str(run_dir), "--by", "accent", "--format", "json")))
    return {"n": 1000, "asrfair": best(ours).__dict__, "baseline": best(theirs).__dict__}


# -- output ---------------------------------------------------------------------------------------


def markdown(results: dict) -> str:
    lines = ["| work | asrfair | baseline | ratio (wall) | ratio (CPU) | asrfair peak memory | baseline peak memory |", "|---|---:|---:|---:|---:|---:|---:|"]
    for row in results.get("run", []):
        lines.append(_row(f"`run --backend replay`, {row['n']:,} utterances", row))
    for action in ("report", "slices", "compare"):
        if action in results:
            lines.append(_row(f"`{action}` on {results[action]['n']:,} rows", results[action]))
    if "startup" in results:
        lines.append(_row("`report` on a 1,000-row run vs `python -c \"import pandas\"`", results["startup"]))
    runs = results.get("run", [])
    if len(runs) >= 2:
        lines.append("")
        lines.append("Cost per utterance (asrfair run, wall): " + ", ".join(f"{r['n']:,}: {1e6 * r['asrfair']['wall_s'] / r['n']:.1f} µs" for r in runs))
        a, b = runs[-2], runs[-1]
        marginal = (b["asrfair"]["wall_s"] - a["asrfair"]["wall_s"]) / (b["n"] - a["n"])
        lines.append(f"Marginal cost from {a['n']:,} to {b['n']:,}: {1e6 * marginal:.1f} µs per utterance; "
                     f"memory {1e3 * (b['asrfair']['max_rss_mb'] - a['asrfair']['max_rss_mb']) / (b['n'] - a['n']):.2f} KB per utterance.")
    if "report" in results and "wer_check" in results["report"]:
        lines.append("")
        lines.append("Baseline report: " + results["report"]["wer_check"])
    return "\n".join(lines)


def _row(label: str, row: dict) -> str:
    ours, theirs = row["asrfair"], row["baseline"]
    return (f"| {label} | {ours['wall_s']:.2f} s | {theirs['wall_s']:.2f} s | {ours['wall_s'] / theirs['wall_s']:.2f}× | "
            f"{ours['cpu_s'] / theirs['cpu_s']:.2f}× | {ours['max_rss_mb']:.0f} MB | {theirs['max_rss_mb']:.0f} MB |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="Utterance counts for the run benchmark; the largest is used for report, slices, compare.")
    parser.add_argument("--repeats", type=int, default=3, help="Interleaved repeats per measurement (best wall time kept); `run` at 1M or more uses at most 2.")
    parser.add_argument("--only", default=",".join(ACTIONS), help=f"Subset of {','.join(ACTIONS)}.")
    parser.add_argument("--data", type=Path, default=HERE / ".data", help="Where generated manifests and hypotheses are kept.")
    parser.add_argument("--work", type=Path, default=HERE / ".data" / "work", help="Where runs and outputs are written.")
    parser.add_argument("--json", type=Path, help="Also write the figures as JSON here.")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    actions = {a.strip() for a in args.only.split(",") if a.strip()}
    args.work.mkdir(parents=True, exist_ok=True)
    compile_harness()
    results: dict = {"machine": f"{platform.node()}: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}",
                     "date": dt.datetime.now().isoformat(timespec="minutes")}
    if "run" in actions:
        results["run"] = []
        for n in sizes:
            row = bench_run(args.work, args.data, n, repeats=min(args.repeats, 2) if n >= 1_000_000 else args.repeats)
            results["run"].append(row)
            print(f"run {n:,}: asrfair {row['asrfair']['wall_s']:.2f} s, baseline {row['baseline']['wall_s']:.2f} s", file=sys.stderr, flush=True)
    report_actions = actions & {"report", "slices", "compare"}
    if report_actions:
        results.update(bench_reports(args.work, args.data, sizes[-1], args.repeats, report_actions))
    if "startup" in actions:
        results["startup"] = bench_startup(args.work, args.data, repeats=max(args.repeats, 5))
    print(f"Machine: {results['machine']}. Date: {results['date']}.\n")
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
