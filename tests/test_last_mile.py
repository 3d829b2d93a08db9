"""Last-mile testing end to end: the customer's own recording as a profile, an SNR sweep, the degradation report."""

import json

import numpy as np
import pytest
import soundfile
from typer.testing import CliRunner

from harness.backends import load_backend
from harness.cli import app
from harness.manifest import ColumnMap, load_manifest
from harness.noise import add_recordings, load_profile
from harness.report import ReportOptions, build_report, write_report
from harness.runner import build_conditions, run_evaluation
from tests.conftest import demo_subset, shared_path

runner = CliRunner()


def arctic_manifest(tmp_path):
    """The six CMU ARCTIC clips (two real speakers, US and Indian English) as a TSV manifest."""
    arctic = shared_path("cmu_arctic")
    lines = ["id\taudio\ttext\tspeaker\taccent"]
    for row in (arctic / "transcripts.tsv").read_text().splitlines()[1:]:
        file, speaker, utt_id, _sex, accent, transcript = row.split("\t")
        lines.append(f"{utt_id}\t{arctic / file}\t{transcript}\t{speaker}\t{accent}")
    path = tmp_path / "arctic.tsv"
    path.write_text("\n".join(lines) + "\n")
    return load_manifest(path, columns=ColumnMap(tags=("accent",)))


def test_real_noise_raises_pocketsphinx_wer_on_real_speech(tmp_path):
    manifest = arctic_manifest(tmp_path)
    recording = shared_path("noise", "recordings", "doing_the_dishes.wav")
    add_recordings([recording], name="dishes", directory=tmp_path / "profiles")
    profile = load_profile(tmp_path / "profiles" / "dishes.yaml")
    run_evaluation(manifest, load_backend("pocketsphinx"), out_dir=tmp_path / "run", conditions=build_conditions([profile], [0.0]), seed=3)
    report = build_report(tmp_path / "run", ReportOptions(by=("accent",), min_speakers=1, min_words=1))
    overall = {row["condition"]: row for row in report.conditions.rows if row["dimension"] == "accent"}
    rows = [r for r in report.conditions.rows if r["condition"] == "dishes@0dB"]
    clean_errors = sum(r["wer_clean"] * r["ref_words"] for r in rows)
    noisy_errors = sum(r["wer"] * r["ref_words"] for r in rows)
    assert noisy_errors > clean_errors, f"0 dB dishwashing noise should hurt: clean {clean_errors}, noisy {noisy_errors}"
    assert overall  # both accents analysed
    # Provenance per utterance: which file, where in it, the measured SNR, the seed.
    from harness.report.data import load_run

    frame = load_run(tmp_path / "run", texts=True).frame
    noisy = frame[frame["condition_key"] == "dishes@0dB"]
    record = json.loads(noisy["noise_json"].iloc[0])
    assert "seed" in record[0]
    flat = json.dumps(record)
    assert "doing_the_dishes.wav" in flat and "snr" in flat


def test_snr_sweep_report_and_plot(tmp_path):
    # Speech a recogniser hears (the committed demo), so that -5 dB white noise measurably hurts.
    manifest = load_manifest(demo_subset(tmp_path / "demo.jsonl"))
    conditions = build_conditions([load_profile("white")], [20.0, -5.0])
    run_evaluation(manifest, load_backend("pocketsphinx"), out_dir=tmp_path / "run", conditions=conditions, batch_size=8)
    report = build_report(tmp_path / "run", ReportOptions(by=("accent",), min_speakers=2, min_words=10))
    written = write_report(report, tmp_path / "run", formats=["md", "json"])
    assert (tmp_path / "run" / "robustness.svg") in written and (tmp_path / "run" / "robustness.png").exists()
    data = json.loads((tmp_path / "run" / "report.json").read_text())
    rows = data["conditions"]["slices"]
    assert {r["condition"] for r in rows} == {"white@20dB", "white@-5dB"}
    us = {r["condition"]: r for r in rows if r["by"] == {"accent": "us"}}
    assert us["white@-5dB"]["wer"] > us["white@20dB"]["wer"] >= 0
    assert us["white@-5dB"]["degradation"] == pytest.approx(us["white@-5dB"]["wer"] - us["white@-5dB"]["wer_clean"])
    assert us["white@-5dB"]["degradation_ci_low"] <= us["white@-5dB"]["degradation"] <= us["white@-5dB"]["degradation_ci_high"]
    assert "robustness.svg" in (tmp_path / "run" / "report.md").read_text()
    # The clean table stays the default view; --by condition pools across conditions on request.
    assert report.condition == "clean"
    by_condition = build_report(tmp_path / "run", ReportOptions(by=("condition",), min_speakers=2, min_words=10))
    assert {row["by"]["condition"] for row in by_condition.table.slices} == {"clean", "white"}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--profile", "no-such-profile", "--snr", "10"], "no-such-profile"),
        (["--profile", "pink", "--snr", "10,loud"], "'loud' is not a number"),
        (["--profile", "pink"], "--snr"),
    ],
)
def test_bad_noise_input_exits_2_before_transcribing(tmp_path, generated_manifest, arguments, message):
    result = runner.invoke(app, ["run", str(generated_manifest), "--out", str(tmp_path / "run"), *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "run" / "results.sqlite").exists()


def test_missing_or_corrupt_recording_stops_before_transcribing(tmp_path, generated_manifest):
    noise = tmp_path / "hum.wav"
    rng = np.random.default_rng(0)
    soundfile.write(noise, 0.1 * rng.standard_normal(32000).astype(np.float32), 16000)
    result = runner.invoke(app, ["noise", "add", str(noise), "--name", "hum", "--dir", str(tmp_path / "profiles")])
    assert result.exit_code == 0, result.output
    profile_path = tmp_path / "profiles" / "hum.yaml"
    noise.unlink()
    result = runner.invoke(app, ["run", str(generated_manifest), "--out", str(tmp_path / "run"), "--profile", str(profile_path), "--snr", "5"])
    assert result.exit_code == 2 and "hum.wav" in result.output
    assert not (tmp_path / "run" / "results.sqlite").exists()


def test_noise_cli_add_list_preview(tmp_path, generated_manifest, monkeypatch):
    monkeypatch.setenv("ASRFAIR_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    recording = shared_path("noise", "recordings", "berlin_street_tram.m4a")
    result = runner.invoke(app, ["noise", "add", str(recording), "--name", "tram"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "noise_profiles" / "tram.yaml").exists()
    listing = runner.invoke(app, ["noise", "list"])
    assert "tram" in listing.output and "pink" in listing.output
    first_id = json.loads(generated_manifest.read_text().splitlines()[0])["id"]
    out = tmp_path / "preview.wav"
    result = runner.invoke(app, ["noise", "preview", "tram", "--manifest", str(generated_manifest), "--utterance", first_id, "--snr", "5", "-o", str(out)])
    assert result.exit_code == 0, result.output
    audio, rate = soundfile.read(out)
    assert rate == 16000 and audio.std() > 0.01
    silent = tmp_path / "silent.wav"
    soundfile.write(silent, np.zeros(48000, dtype=np.float32), 16000)
    rejected = runner.invoke(app, ["noise", "add", str(silent), "--name", "quiet"])
    assert rejected.exit_code == 2 and "silent.wav" in rejected.output
