"""Mutation testing of the statistics, scoring, seeding, normalisers, the report's rules and the runner's core (`make mutation`).

Runs mutmut 3 (configured in pyproject.toml, [tool.mutmut]) on the mutants in scope, then prints a
Markdown table of mutants per module: killed, survived, timed out, and the score, (killed + timed out) /
(total - no tests - not run), for benchmarks/README.md. `--report-only` prints the table of the last run without running.
`--max-children` bounds the parallel test processes (default 2: the CI machines have two cores).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The runner's core: planning what is not stored, and the counts a session records (not run_evaluation's
# plumbing, the out-folder checks or the error messages).
RUNNER = ("Conditionǁkey", "build_conditions", "plan_work", "_count_failed", "_count_cached", "_count_in", "_sum_stats", "_open_run")
# One unit of work: preparing (decoding, limits, per-utterance noise seeds, babble), transcribing in
# batches with failures isolated, scoring into result rows.
PIPELINE = (
    "PreparedUnitǁseeds", "BabbleCandidatesǁposition", "BabbleCandidatesǁutterance", "AudioLoaderǁ__call__",
    "reference_too_long", "babble_pool_for", "work_utterances", "prepare_unit", "_noise_seed", "_prepare_one",
    "transcribe_unit", "score_unit", "run_unit",
)
# The store: buffering and grouped commits, the duplicate check, retry replacement, discarding,
# compaction, reading back (superseded rows skipped, the ledger deciding), done keys, the schema.
# Not durability (fsync cannot be observed short of pulling the power), closing or messages alone.
STORE = (
    "ResultStoreǁ__init__", "ResultStoreǁappend", "ResultStoreǁflush", "ResultStoreǁ_commit",
    "ResultStoreǁ_replace_retryable", "ResultStoreǁdiscard", "ResultStoreǁcompact", "ResultStoreǁexport",
    "ResultStoreǁcount", "ResultStoreǁdone_keys", "ResultStoreǁretryable_keys", "ResultStoreǁfailure_counts",
    "ResultStoreǁread_table", "ResultStoreǁ_listed_only", "ResultStoreǁ_stored_schema", "ResultStoreǁ_next_part",
    "ResultStoreǁ_superseded", "ResultStoreǁ_remove_orphans",
    "result_schema", "conform", "rows_to_table", "row_keys", "retryable_mask", "tag_names_of", "_insert_keys", "_drop_superseded",
    "_read_part", "_duplicate_message", "_is_legacy", "_schema_json", "_schema_from_json",
)


def _functions(module: str, names: tuple[str, ...]) -> tuple[str, ...]:
    # mutmut 3 names a mutant <module>.x_<function>__mutmut_<n>, or <module>.xǁ<class>ǁ<method>__mutmut_<n>.
    return tuple(f"{module}.{'xǁ' + name if 'ǁ' in name else 'x_' + name}__mutmut_*" for name in names)


# Every mutant of these modules; of render.py only the CSV writer, of escaping.py its formula defusing,
# and of the runner, pipeline and store the functions named above.
SCOPE = (
    "harness.stats.*",
    "harness.scoring.*",
    "harness.seeding.*",
    "harness.normalize.*",
    "harness.report.slices.*",
    "harness.report.render.x_write_csv__mutmut_*",
    "harness.escaping.x_escape_csv__mutmut_*",
    *_functions("harness.runner", RUNNER),
    *_functions("harness.pipeline", PIPELINE),
    *_functions("harness.store", STORE),
)
# mutmut's exit codes per mutant (mutmut/stats.py).
KILLED, SURVIVED, NO_TESTS, TIMEOUT = {1, 3}, {0}, {5, 33}, {-24, 24, 36, 152, 255}


def in_scope(name: str) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(name, pattern) for pattern in SCOPE)


def results() -> dict[str, Counter]:
    per_module: dict[str, Counter] = {}
    for meta in sorted((ROOT / "mutants" / "harness").rglob("*.py.meta")):
        module = str(meta.relative_to(ROOT / "mutants")).removesuffix(".meta")
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if not in_scope(name):
                continue
            counts = per_module.setdefault(module, Counter())
            counts["total"] += 1
            if code in KILLED:
                counts["killed"] += 1
            elif code in SURVIVED:
                counts["survived"] += 1
            elif code in NO_TESTS:
                counts["no tests"] += 1
            elif code in TIMEOUT:
                counts["timeout"] += 1
            elif code is None:
                counts["not run"] += 1
            else:
                counts["other"] += 1
    return per_module


def table(per_module: dict[str, Counter]) -> str:
    columns = ("total", "killed", "survived", "timeout", "no tests", "not run")
    lines = ["| module | " + " | ".join(columns) + " | score |", "|---" * (len(columns) + 2) + "|"]
    overall: Counter = Counter()
    for module, counts in [*per_module.items(), ("**all**", None)]:
        if counts is None:
            counts = overall
        else:
            overall.update(counts)
        # Over the mutants that ran (a partial run leaves some "not run"); one no test reaches is not scored.
        tested = counts["total"] - counts["no tests"] - counts["not run"]
        # A timeout is a mutant the tests stopped (an endless loop), so it counts as caught.
        score = f"{100 * (counts['killed'] + counts['timeout']) / tested:.1f}%" if tested else "–"
        lines.append(f"| {module} | " + " | ".join(str(counts[c]) for c in columns) + f" | {score} |")
    return "\n".join(lines)


def survivors() -> list[str]:
    names = []
    for meta in sorted((ROOT / "mutants" / "harness").rglob("*.py.meta")):
        names += [n for n, code in json.loads(meta.read_text())["exit_code_by_key"].items() if code in SURVIVED and in_scope(n)]
    return names


def not_killed() -> list[str]:
    """Mutants in scope not yet run, or not killed (survived, or no test reached them): what a resumed
    run tests again after tests were added. A killed mutant stays killed: a new test cannot revive it."""
    names = []
    for meta in sorted((ROOT / "mutants" / "harness").rglob("*.py.meta")):
        names += [n for n, code in json.loads(meta.read_text())["exit_code_by_key"].items() if in_scope(n) and (code is None or code in SURVIVED or code in NO_TESTS)]
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-children", type=int, default=2)
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants (mutmut show NAME shows each)")
    parser.add_argument("--resume", action="store_true", help="test only the mutants in scope not yet run or not killed (after an interruption, or after adding tests)")
    parser.add_argument("--rerun-survivors", action="store_true", help="test the surviving mutants again (after adding tests)")
    parser.add_argument("--only", nargs="+", metavar="PATTERN", help="with --resume or --rerun-survivors: only mutants matching these patterns, e.g. 'harness.runner.*'")
    args = parser.parse_args()
    if not args.report_only and not args.survivors:
        from fnmatch import fnmatch

        mutmut = Path(sys.executable).with_name("mutmut")
        names = not_killed() if args.resume else survivors() if args.rerun_survivors else SCOPE
        if args.only:
            names = [name for name in names if any(fnmatch(name, pattern) for pattern in args.only)]
        if names:
            subprocess.run([str(mutmut), "run", "--max-children", str(args.max_children), *names], cwd=ROOT, check=True)
    if args.survivors:
        print("\n".join(survivors()))
        return
    print(table(results()))


if __name__ == "__main__":
    main()
