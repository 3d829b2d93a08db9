"""The baseline for benchmarks/scale.py: what a competent analyst writes with numpy and pandas.

It does not import asrfair. Same inputs, same normaliser (asrfair's `basic`, written out and applied
string by string), same alignment (rapidfuzz, as jiwer uses), so its WER and per-utterance errors
equal asrfair's; its intervals come from a speaker bootstrap (percentile, 1,000 resamples).

  python benchmarks/scale_baseline.py run MANIFEST.jsonl HYPOTHESES.tsv OUT.parquet
  python benchmarks/scale_baseline.py report RESULTS.parquet OUT.json --by accent
  python benchmarks/scale_baseline.py slices RESULTS.parquet OUT.json --tags accent,gender,age,device
  python benchmarks/scale_baseline.py compare A.parquet B.parquet OUT.json --by accent
"""

from __future__ import annotations

import argparse
import itertools
import json
import unicodedata

import numpy as np
import pandas as pd
import regex
from rapidfuzz.distance import Levenshtein

# asrfair's default normaliser, `basic`, written out: NFKC, case-folded, words of letters, marks and
# digits of any script joined by apostrophes inside them.
APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\uff07": "'"})
WORD = regex.compile(r"[\p{L}\p{M}\p{N}]+(?:'[\p{L}\p{M}\p{N}]+)*")
RESAMPLES = 1000


def normalize(text: str) -> str:
    return " ".join(WORD.findall(unicodedata.normalize("NFKC", text).casefold().translate(APOSTROPHES)))


def run(manifest: str, hypotheses: str, out: str) -> None:
    frame = pd.read_json(manifest, lines=True, engine="pyarrow")
    tags = pd.DataFrame(frame.pop("tags").tolist())
    frame = pd.concat([frame, tags], axis=1)
    hyps = pd.read_csv(hypotheses, sep="\t", engine="pyarrow", dtype=str, keep_default_na=False)
    frame = frame.merge(hyps, on="id", how="left")
    refs = [normalize(t) for t in frame["text"]]
    outs = [normalize(t) for t in frame["hypothesis"].fillna("")]
    counts = np.zeros((len(refs), 4), dtype=np.int64)
    for row, (ref, hyp) in enumerate(zip(refs, outs)):
        ref_words, hyp_words = ref.split(), hyp.split()
        subs = dels = ins = 0
        for tag, _, _ in Levenshtein.editops(ref_words, hyp_words).as_list():
            if tag == "replace":
                subs += 1
            elif tag == "delete":
                dels += 1
            else:
                ins += 1
        counts[row] = (len(ref_words), subs, dels, ins)
    frame["ref_words"] = counts[:, 0]
    frame["errors"] = counts[:, 1:].sum(axis=1)
    frame.to_parquet(out, index=False)
    by_accent = frame.groupby("accent")[["errors", "ref_words"]].sum()
    print((by_accent.errors / by_accent.ref_words).round(4).to_dict())


def speaker_sums(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.groupby([*keys, "speaker"], observed=True)[["errors", "ref_words"]].sum().reset_index()


def bootstrap_weights(n_speakers: int, seed: int) -> np.ndarray:
    """How many times each speaker is drawn in each of RESAMPLES speaker resamples."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_speakers, np.full(n_speakers, 1 / n_speakers), size=RESAMPLES).astype(np.float32)


def slice_table(frame: pd.DataFrame, keys: list[str], seed: int) -> list[dict]:
    """Pooled WER per slice and a 95% percentile interval from one joint speaker bootstrap."""
    speakers = pd.Index(frame["speaker"].unique())
    weights = bootstrap_weights(len(speakers), seed)
    sums = speaker_sums(frame, keys)
    slice_codes, slice_labels = pd.MultiIndex.from_frame(sums[keys]).factorize()
    columns = speakers.get_indexer(sums["speaker"])
    errors = np.zeros((len(slice_labels), len(speakers)), dtype=np.float32)
    words = np.zeros_like(errors)
    errors[slice_codes, columns] = sums["errors"].to_numpy()
    words[slice_codes, columns] = sums["ref_words"].to_numpy()
    replicate = (weights @ errors.T) / np.maximum(weights @ words.T, 1)
    low, high = np.percentile(replicate, [2.5, 97.5], axis=0)
    out = []
    for index, label in enumerate(slice_labels):
        out.append({
            "slice": dict(zip(keys, label)), "wer": float(errors[index].sum() / words[index].sum()),
            "speakers": int((words[index] > 0).sum()), "ci": [float(low[index]), float(high[index])],
        })
    return out


def read(path: str, tags: list[str]) -> pd.DataFrame:
    return pd.read_parquet(path, columns=["id", "speaker", "errors", "ref_words", *tags])


def report(results: str, out: str, by: list[str]) -> None:
    frame = read(results, by)
    rows = [row for name in by for row in slice_table(frame, [name], seed=0)]
    with open(out, "w") as handle:
        json.dump(rows, handle)


def slices(results: str, out: str, tags: list[str], depth: int) -> None:
    frame = read(results, tags)
    rows = []
    for size in range(1, depth + 1):
        for keys in itertools.combinations(tags, size):
            rows.extend(slice_table(frame, list(keys), seed=0))
    with open(out, "w") as handle:
        json.dump(rows, handle)


def compare(results_a: str, results_b: str, out: str, by: list[str]) -> None:
    a, b = read(results_a, by), read(results_b, [])
    paired = a.merge(b[["id", "errors"]], on="id", suffixes=("_a", "_b"))
    speakers = pd.Index(paired["speaker"].unique())
    weights = bootstrap_weights(len(speakers), seed=0)
    rows = []
    for name in by:
        sums = paired.groupby([name, "speaker"], observed=True)[["errors_a", "errors_b", "ref_words"]].sum().reset_index()
        codes, labels = sums[name].factorize()
        columns = speakers.get_indexer(sums["speaker"])
        shape = (len(labels), len(speakers))
        errors_a, errors_b, words = (np.zeros(shape, dtype=np.float32) for _ in range(3))
        errors_a[codes, columns] = sums["errors_a"].to_numpy()
        errors_b[codes, columns] = sums["errors_b"].to_numpy()
        words[codes, columns] = sums["ref_words"].to_numpy()
        total = np.maximum(weights @ words.T, 1)
        change = (weights @ errors_b.T - weights @ errors_a.T) / total
        low, high = np.percentile(change, [2.5, 97.5], axis=0)
        for index, label in enumerate(labels):
            rows.append({
                "slice": {name: label}, "wer_a": float(errors_a[index].sum() / words[index].sum()),
                "wer_b": float(errors_b[index].sum() / words[index].sum()), "ci": [float(low[index]), float(high[index])],
            })
    with open(out, "w") as handle:
        json.dump(rows, handle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("run")
    p.add_argument("manifest"), p.add_argument("hypotheses"), p.add_argument("out")
    p = commands.add_parser("report")
    p.add_argument("results"), p.add_argument("out"), p.add_argument("--by", default="accent")
    p = commands.add_parser("slices")
    p.add_argument("results"), p.add_argument("out"), p.add_argument("--tags", default="accent,gender,age,device"), p.add_argument("--depth", type=int, default=2)
    p = commands.add_parser("compare")
    p.add_argument("results_a"), p.add_argument("results_b"), p.add_argument("out"), p.add_argument("--by", default="accent")
    args = parser.parse_args()
    if args.command == "run":
        run(args.manifest, args.hypotheses, args.out)
    elif args.command == "report":
        report(args.results, args.out, args.by.split(","))
    elif args.command == "slices":
        slices(args.results, args.out, args.tags.split(","), args.depth)
    else:
        compare(args.results_a, args.results_b, args.out, args.by.split(","))


if __name__ == "__main__":
    main()
