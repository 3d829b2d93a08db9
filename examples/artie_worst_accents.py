"""Which accents does each system serve worst? The Artie Bias Corpus with 9 real ASR systems' outputs.

Run from the project root with the team's data beside it: `.venv/bin/python examples/artie_worst_accents.py`.
"highest" and "lowest" are point estimates among accents that are not small; whether the accents differ at
all is the test of equal WER; the ratio's interval accounts for having picked the two from the same data.
Writes one run per system under reports/artie/ and prints a Markdown table.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness.backends import load_backend
from harness.manifest import ColumnMap, load_manifest
from harness.report import ReportOptions, build_report
from harness.runner import run_evaluation

ARTIE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "artie"
COLUMNS = ColumnMap(id="path", text="sentence", speaker="client_id", tags=("accent", "gender", "age"), missing_values=("", "NA"))


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def main() -> None:
    if not ARTIE.exists():
        sys.exit(f"needs the Artie data at {ARTIE}")
    manifest = load_manifest(ARTIE / "artie-bias-corpus.tsv", columns=COLUMNS, require_audio=False)
    systems = sorted(p for p in (ARTIE / "predictions").rglob("*.tsv") if not p.name.endswith("-original.tsv"))
    print("| system | WER % [95% CI] | highest accent: WER % [CI] | lowest accent: WER % [CI] | highest / lowest [simultaneous CI] | equal WER? p (Holm) |")
    print("|---|---|---|---|---|---|")
    for path in systems:
        name = str(path.relative_to(ARTIE / "predictions").with_suffix(""))
        out_dir = Path("reports") / "artie" / name.replace("/", "_")
        options = {"hypotheses": str(path), "id_column": "path", "hypothesis_column": "prediction", "match": "stem"}
        if not (out_dir / "run.json").exists():
            run_evaluation(manifest, load_backend("replay", options), out_dir=out_dir, normalizer="basic", backend_options=options)
        report = build_report(out_dir, ReportOptions(by=("accent",)))
        overall = report.table.overall
        [accent] = report.table.disparities
        rows = {row["by"]["accent"]: row for row in report.table.slices}
        worst, best = rows[accent.worst["accent"]], rows[accent.best["accent"]]
        ratio = accent.worst_to_best_ratio
        high = "∞" if ratio["ci_high"] is None else f"{ratio['ci_high']:.2f}"
        verdict = "differ" if accent.disparity_detected else "cannot tell"
        print(
            f"| {name} | {pct(overall['wer'])} [{pct(overall['wer_ci_low'])}, {pct(overall['wer_ci_high'])}] "
            f"| {worst['by']['accent']}: {pct(worst['wer'])} [{pct(worst['wer_ci_low'])}, {pct(worst['wer_ci_high'])}] "
            f"| {best['by']['accent']}: {pct(best['wer'])} [{pct(best['wer_ci_low'])}, {pct(best['wer_ci_high'])}] "
            f"| {ratio['estimate']:.2f} [{ratio['ci_low']:.2f}, {high}] | {verdict}: {accent.equal_wer_test['p_value_holm']:.2g} |"
        )


if __name__ == "__main__":
    main()
