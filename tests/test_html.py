"""The HTML report: real figures from a replayed run, the forest plot, alignments, and escaping of untrusted text."""

import json
import re

import numpy as np
import pytest
import soundfile

from harness.backends import Backend, load_backend
from harness.manifest import load_manifest
from harness.noise import load_profile
from harness.report import ReportOptions, build_report
from harness.report.html import alignment_html, render_html
from harness.report.format import pct as _pct
from harness.runner import build_conditions, run_evaluation

SCRIPT_REFERENCE = "<script>alert(1)</script> is not a word"
EVIL_TAG = '"><img src=x onerror=alert(1)>'
SENTENCE = "one two three four five six seven eight nine ten"  # 10 words
OPTIONS = ReportOptions(by=("accent",), n_resamples=200, seed=1)


def manifest_records():
    """accent a and b: 12 speakers x 1 utterance of 10 words each (not small); EVIL_TAG: 2 speakers (small).
    One utterance of b is "the cat sat on the mat", heard as "the bat sat on mat": a substitution and a deletion."""
    records = []
    for accent in ("a", "b"):
        for i in range(12):
            records.append({"id": f"{accent}{i}", "text": SENTENCE, "speaker": f"{accent}-spk{i}", "tags": {"accent": accent, "source": "recorded"}})
    records.append({"id": "cat", "text": "the cat sat on the mat", "speaker": "b-spk0", "tags": {"accent": "b"}})
    records.append({"id": "evil1", "text": SCRIPT_REFERENCE, "speaker": "e-spk0", "tags": {"accent": EVIL_TAG}})
    records.append({"id": "evil2", "text": SENTENCE, "speaker": "e-spk1", "tags": {"accent": EVIL_TAG}})
    records.append({"id": "nolabel", "text": SENTENCE, "speaker": "n-spk0", "tags": {}})
    return records


def hypothesis_for(record):
    if record["id"] == "cat":
        return "the bat sat on mat"
    if record["id"].startswith("a"):
        return SENTENCE.replace("three", "tree")  # 1 error in 10
    if record["id"] == "evil1":
        return "<img src=x onerror=alert(2)> is a word"
    return SENTENCE.replace("two ", "")  # 1 deletion in 10


def replay_run(tmp_path, records=None, *, missing=()):
    """A run directory through the real pipeline: manifest JSONL, replay backend, scoring, results store."""
    records = records or manifest_records()
    manifest_path = tmp_path / "manifest.jsonl"
    manifest_path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    hypotheses = tmp_path / "hypotheses.jsonl"
    hypotheses.write_text("".join(json.dumps({"id": r["id"], "hypothesis": hypothesis_for(r)}) + "\n" for r in records if r["id"] not in missing), encoding="utf-8")
    options = {"hypotheses": str(hypotheses)}
    run_evaluation(load_manifest(manifest_path, require_audio=False), load_backend("replay", options), out_dir=tmp_path / "run", normalizer="basic", backend_options=options)
    return tmp_path / "run"


class DegradingBackend(Backend):
    """Hears clean audio perfectly and drops the last two words under any noise condition; fails on id 'broken'."""

    name = "degrading"
    sample_rate_hz = 16000

    def __init__(self, texts):
        self.texts = texts

    def transcribe(self, batch):
        if any(request.utterance_id == "broken" for request in batch):
            raise RuntimeError("cannot transcribe")
        out = []
        for request in batch:
            words = self.texts[request.utterance_id].lower().split()
            out.append(" ".join(words if request.condition == "clean" else words[:-2]))
        return out

    def describe(self):
        return {"name": self.name}


def noisy_run(tmp_path):
    """Clean and white noise at 10 dB over 24 generated clips (two accents of 12 speakers) plus one that fails."""
    (tmp_path / "audio").mkdir()
    rng = np.random.default_rng(0)
    records = []
    for accent in ("a", "b"):
        for i in range(12):
            name = f"{accent}{i}"
            soundfile.write(tmp_path / "audio" / f"{name}.wav", 0.1 * rng.standard_normal(1600).astype("float32"), 16000)
            records.append({"id": name, "audio": f"audio/{name}.wav", "text": SENTENCE, "speaker": f"{accent}-spk{i}", "tags": {"accent": accent, "source": "synthetic"}})
    soundfile.write(tmp_path / "audio" / "broken.wav", np.zeros(1600, dtype="float32"), 16000)
    records.append({"id": "broken", "audio": "audio/broken.wav", "text": SENTENCE, "speaker": "x", "tags": {"accent": "a", "source": "synthetic"}})
    manifest_path = tmp_path / "manifest.jsonl"
    manifest_path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    backend = DegradingBackend({r["id"]: r["text"] for r in records})
    conditions = build_conditions([load_profile("white")], [10.0])
    run_evaluation(load_manifest(manifest_path), backend, out_dir=tmp_path / "run", normalizer="basic", conditions=conditions, batch_size=8, prep_workers=1)
    return tmp_path / "run"


def test_html_holds_the_slice_figures_and_flags_small_slices(tmp_path):
    report = build_report(replay_run(tmp_path), OPTIONS)
    page = render_html(report)
    slices = {row["by"]["accent"]: row for row in report.table.slices}
    assert slices["a"]["wer"] == 0.1 and not slices["a"]["small"]
    assert f"<td class=\"\">{_pct(slices['a']['wer'])}</td>" in page  # "10.0%"
    assert f"<td class=\"\">{_pct(report.table.overall['wer'])}</td>" in page
    low, high = slices["a"]["wer_ci_low"], slices["a"]["wer_ci_high"]
    assert f"{100 * low:.1f}–{100 * high:.1f}" in page
    assert slices[EVIL_TAG]["small"]
    small_rows = re.findall(r'<tr class="small">(.*?)</tr>', page)
    assert len(small_rows) == 2  # the EVIL_TAG slice and "(not given)"
    assert all("<td class=\"\">–</td>" in row and 'class="badge"' in row for row in small_rows)
    assert str(tmp_path / "manifest.jsonl") in page and report.run["manifest"]["sha256"] in page


def test_forest_plot_has_one_filled_marker_per_trusted_slice(tmp_path):
    report = build_report(replay_run(tmp_path), OPTIONS)
    page = render_html(report)
    svg = re.search(r'<svg class="forest".*?</svg>', page, flags=re.S).group(0)
    trusted = [row for row in report.table.slices if not row["small"]]
    small = [row for row in report.table.slices if row["small"]]
    assert len(trusted) == 2 and len(small) == 2
    assert svg.count('class="pt"') == len(trusted)
    assert svg.count('class="pt-small"') == len(small)
    assert svg.count('class="ci"') == len(trusted)  # small slices get no interval line
    assert svg.count('class="ref"') == 1  # the overall WER


def test_worst_utterances_show_the_alignment(tmp_path):
    page = render_html(build_report(replay_run(tmp_path), OPTIONS))
    assert "cat→bat" in page
    assert '<del title="deletion"><span class="sr">deleted: </span>the</del>' in page
    assert "<details open>" in page  # the worst trusted slice is expanded


@pytest.mark.parametrize(
    ("reference", "hypothesis", "expected"),
    [
        ("the cat sat on the mat", "the bat sat on mat", ['<span class="sr">substituted: </span>cat→bat', '<del title="deletion"><span class="sr">deleted: </span>the</del>']),
        ("turn on the light", "turn on all the light", ['<ins title="insertion"><span class="sr">inserted: </span>+all</ins>']),
        ("same words", "same words", ["same words"]),
        ("", "noise", ["+noise</ins>"]),
    ],
)
def test_alignment_marks_every_kind_in_text_not_only_colour(reference, hypothesis, expected):
    markup = alignment_html(reference, hypothesis)
    for fragment in expected:
        assert fragment in markup


def test_untrusted_text_is_escaped_everywhere(tmp_path):
    page = render_html(build_report(replay_run(tmp_path), OPTIONS))
    assert "<script" not in page.lower()
    assert EVIL_TAG not in page and "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the reference, shown as text
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page  # the tag value, in the table and the plot
    assert "default-src 'none'" in page  # and nothing could run or load even if escaping failed


def test_html_with_conditions_has_degradation_table_and_inline_plot(tmp_path):
    run_dir = noisy_run(tmp_path)
    report = build_report(run_dir, OPTIONS)
    page = render_html(report)
    assert "Under each condition" in page and "white@10dB" in page
    # Two words of ten lost under noise: +20.0 points for every slice.
    assert page.count("<td class=\"\">+20.0 pts</td>") == 2
    figure = re.search(r'<figure class="robustness">(.*?)</figure>', page, flags=re.S).group(1)
    assert figure.lstrip().startswith("<svg") and "<?xml" not in figure and "<!--" not in figure
    assert "Failed utterances (2)" in page and "cannot transcribe" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "").replace('xmlns:xlink="http://www.w3.org/1999/xlink"', "").replace("http://purl.org", "")


def test_robustness_figure_names_the_metric_not_a_slice(tmp_path):
    import matplotlib.pyplot as plt

    from harness.report.conditions import robustness_figure

    report = build_report(noisy_run(tmp_path), OPTIONS)
    figure = robustness_figure(report.conditions)
    try:
        assert figure._suptitle.get_text().startswith("WER against SNR")
        assert figure.axes[0].get_ylabel() == "WER (%)"
        assert "95% speaker-clustered intervals" in figure._suptitle.get_text()
    finally:
        plt.close(figure)
