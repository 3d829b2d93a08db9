"""faster-whisper on a tiny randomly initialised Whisper converted with CTranslate2's own converter (nothing downloaded)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
ctranslate2 = pytest.importorskip("ctranslate2")
faster_whisper = pytest.importorskip("faster_whisper")

from harness.backends import TranscriptionRequest, load_backend  # noqa: E402
from harness.errors import BackendError  # noqa: E402
from tests.test_transformers_backend import MIXED_LENGTHS, _request, whisper_dir  # noqa: E402,F401


@pytest.fixture(scope="module")
def ct2_dir(whisper_dir, tmp_path_factory) -> Path:  # noqa: F811 - the fixture imported above
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    source = tmp_path_factory.mktemp("tiny-whisper-talkative")
    model = WhisperForConditionalGeneration.from_pretrained(whisper_dir)
    with torch.no_grad():
        # A random decoder mostly emits special tokens, which decode to nothing. Silencing every
        # special token and timestamp (id 256 on) and sharpening the byte tokens makes it emit text.
        weights = model.model.decoder.embed_tokens.weight
        weights.mul_(8.0)
        weights[256:] = 0
    model.save_pretrained(source)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (source / name).write_bytes((whisper_dir / name).read_bytes())
    out = tmp_path_factory.mktemp("tiny-whisper-ct2") / "model"
    ctranslate2.converters.TransformersConverter(str(source), copy_files=["tokenizer.json"]).convert(str(out), quantization=None)
    WhisperFeatureExtractor(feature_size=80).to_json_file(str(out / "preprocessor_config.json"))
    return out


@pytest.fixture(scope="module")
def backend(ct2_dir):
    return load_backend("faster-whisper", {"model": str(ct2_dir), "language": "en", "device": "cpu", "batch_size": "4"})


def test_batched_transcripts_equal_one_at_a_time_and_faster_whispers_own_decoding(backend):
    texts = backend.transcribe(MIXED_LENGTHS)
    alone = [backend.transcribe([request])[0] for request in MIXED_LENGTHS]

    assert texts == alone
    for request, text in zip(MIXED_LENGTHS, texts, strict=True):
        # The decoder loops, so only the duration bound ends it.
        assert 0 < len(text) <= backend.max_new_tokens_for(request.duration_s)
        segments, _ = backend._model.transcribe(request.samples, language="en", beam_size=1, temperature=0.0, without_timestamps=True,
                                                condition_on_previous_text=False, vad_filter=False)
        reference = "".join(segment.text for segment in segments).strip()
        assert reference.startswith(text), "the batched path must decode exactly as faster-whisper's own, up to the bound"
    assert len(set(texts)) >= 2
    assert [backend.max_new_tokens_for(s) for s in (0.5, 0.9, 2.0, 3.1, 30.0)] == [32, 64, 64, 128, 448]


def test_long_audio_goes_through_long_form_decoding(backend):
    texts = backend.transcribe([MIXED_LENGTHS[0], _request("long", 35.0)])
    assert len(texts) == 2 and texts[0] == backend.transcribe([MIXED_LENGTHS[0]])[0] and isinstance(texts[1], str)


def test_progress_inside_a_batch(backend):
    seen: list[int] = []
    backend.set_progress(seen.append)
    backend.transcribe(MIXED_LENGTHS)
    backend.set_progress(None)
    assert seen == [4, 6]


def test_describe_records_the_decoding_settings(backend, ct2_dir):
    record = json.loads(json.dumps(backend.describe()))
    assert record["model"] == str(ct2_dir.resolve()) and record["device"] == "cpu" and record["beam_size"] == 1
    assert record["compute_type_in_use"] == "float32" and record["ctranslate2_version"] == ctranslate2.__version__
    assert record["max_new_tokens_rule"] == "25 x seconds of the utterance + 10, rounded up to a power of two (at least 32)"


def test_int8_and_beam_search_run(ct2_dir):
    quantised = load_backend("faster-whisper", {"model": str(ct2_dir), "compute_type": "int8", "beam_size": "2", "language": "en", "max_new_tokens": "5"})
    texts = quantised.transcribe(MIXED_LENGTHS[:2])
    assert quantised.describe()["compute_type_in_use"].startswith("int8") and all(len(t) <= 5 for t in texts)


def test_cli_run_under_noise(ct2_dir, tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app
    from tests.servers import demo_manifest

    manifest = demo_manifest(tmp_path, 2)
    result = CliRunner().invoke(app, ["run", str(manifest), "--backend", "faster-whisper", "--backend-arg", f"model={ct2_dir}", "--backend-arg", "language=en",
                                      "--profile", "white", "--snr", "10", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "complete" and record["backend_details"]["name"] == "faster-whisper"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "/no/such/ct2-model"}, "is not a directory"),
        ({"compute_type": "int4"}, "compute_type='int4'"),
        ({"beam_size": "0"}, "beam_size='0'"),
        ({"device": "tpu"}, "device='tpu'"),
    ],
)
def test_bad_options_are_refused(ct2_dir, options, message):
    with pytest.raises(BackendError, match=message):
        load_backend("faster-whisper", {"model": str(ct2_dir), **options})


def test_a_transformers_directory_is_not_a_ctranslate2_model(whisper_dir):  # noqa: F811
    with pytest.raises(BackendError, match="no model.bin"):
        load_backend("faster-whisper", {"model": str(whisper_dir)})


def test_wrong_rate_is_refused(backend):
    with pytest.raises(BackendError, match="8000 Hz"):
        backend.transcribe([TranscriptionRequest(utterance_id="x", samples=np.zeros(8000, dtype=np.float32), sample_rate_hz=8000)])
