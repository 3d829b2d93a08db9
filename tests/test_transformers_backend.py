"""TransformersBackend on tiny, randomly initialised Whisper and Wav2Vec2-CTC models built offline in tmp dirs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from harness.backends import TranscriptionRequest, load_backend  # noqa: E402
from harness.errors import BackendError  # noqa: E402

RATE_HZ = 16_000
CTC_CHARS = ["<pad>", "<unk>", "|", *"abcdefghijklmnopqrstuvwxyz'"]


def _seeded_model(model_class, config):
    # fork_rng keeps the seed from leaking into torch's global generator for the tests that follow.
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return model_class(config).eval()


@pytest.fixture(scope="module")
def ctc_dir(tmp_path_factory) -> Path:
    from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC, Wav2Vec2Processor

    directory = tmp_path_factory.mktemp("tiny-wav2vec2-ctc")
    vocab_file = tmp_path_factory.mktemp("ctc-vocab") / "vocab.json"
    vocab_file.write_text(json.dumps({char: i for i, char in enumerate(CTC_CHARS)}))
    tokenizer = Wav2Vec2CTCTokenizer(str(vocab_file), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|")
    features = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=RATE_HZ, padding_value=0.0, do_normalize=True, return_attention_mask=True)
    # Layer-norm feature encoder (as in wav2vec2-large-lv60) so padding cannot leak into real frames.
    config = Wav2Vec2Config(
        vocab_size=len(CTC_CHARS),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        conv_dim=(8,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        pad_token_id=0,
    )
    _seeded_model(Wav2Vec2ForCTC, config).save_pretrained(directory)
    Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    directory = tmp_path_factory.mktemp("tiny-whisper")
    # Byte-level BPE with no merges, then the special tokens in Whisper's own order: language ids are
    # found as <|startoftranscript|> + 1 + index, and timestamps follow <|notimestamps|>.
    vocab = {char: i for i, char in enumerate(sorted(ByteLevel.alphabet()))}
    specials = [
        "<|startoftranscript|>",
        *[f"<|{code}|>" for code in LANGUAGES],
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[], pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(1501)])
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in ["<|endoftext|>", *specials]}
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"],
        decoder_start_token_id=ids["<|startoftranscript|>"],
    )
    model = _seeded_model(WhisperForConditionalGeneration, config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|endoftext|>"],
        pad_token_id=ids["<|endoftext|>"],
        no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"],
        lang_to_id={f"<|{code}|>": ids[f"<|{code}|>"] for code in LANGUAGES},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        is_multilingual=True,
        max_initial_timestamp_index=50,
        max_length=448,
    )
    model.save_pretrained(directory)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def ctc_backend(ctc_dir):
    return load_backend("transformers", {"model": str(ctc_dir)})


@pytest.fixture(scope="module")
def whisper_backend(whisper_dir):
    # Greedy and short: a random decoder would otherwise beam-search 256 tokens per segment.
    return load_backend("transformers", {"model": str(whisper_dir), "max_new_tokens": "8", "num_beams": "1", "language": "en"})


def _request(utterance_id: str, duration_s: float, rate_hz: int = RATE_HZ) -> TranscriptionRequest:
    """A tone plus noise whose pitch and noise are keyed by the utterance id, never by call order."""
    rng = np.random.default_rng(sum(utterance_id.encode()))
    t = np.arange(int(duration_s * rate_hz)) / rate_hz
    tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 800) * t)
    samples = (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    return TranscriptionRequest(utterance_id=utterance_id, samples=samples, sample_rate_hz=rate_hz)


MIXED_LENGTHS = [_request(f"utt-{i}", duration_s) for i, duration_s in enumerate([0.5, 2.0, 1.3, 3.1, 0.8, 2.7])]


def test_ctc_returns_one_string_per_request_in_order(ctc_backend):
    texts = ctc_backend.transcribe(MIXED_LENGTHS)

    alone = [ctc_backend.transcribe([request])[0] for request in MIXED_LENGTHS]
    assert all(isinstance(text, str) and text == text.strip() for text in texts)
    assert len(set(alone)) == len(alone), "random model should give each input its own text, or order goes unchecked"
    assert texts == alone


def test_ctc_transcripts_do_not_depend_on_batch_size(ctc_dir):
    one = load_backend("transformers", {"model": str(ctc_dir), "batch_size": "1", "device": "cpu"})
    four = load_backend("transformers", {"model": str(ctc_dir), "batch_size": "4", "device": "cpu"})

    assert one.transcribe(MIXED_LENGTHS) == four.transcribe(MIXED_LENGTHS)


def test_ctc_empty_batch(ctc_backend):
    assert ctc_backend.transcribe([]) == []


def test_whisper_batch_of_mixed_lengths_including_long_form(whisper_backend):
    batch = [MIXED_LENGTHS[0], _request("long", 35.0), MIXED_LENGTHS[1], MIXED_LENGTHS[3]]

    texts = whisper_backend.transcribe(batch)

    assert len(texts) == len(batch)
    assert all(isinstance(text, str) and text == text.strip() for text in texts)
    assert texts[0] == whisper_backend.transcribe([batch[0]])[0]


def test_whisper_chunked_long_form(whisper_dir):
    backend = load_backend("transformers", {"model": str(whisper_dir), "max_new_tokens": "4", "num_beams": "1", "chunk_length_s": "30"})

    texts = backend.transcribe([_request("long", 40.0), MIXED_LENGTHS[0]])

    assert len(texts) == 2 and all(isinstance(text, str) for text in texts)


@pytest.mark.parametrize(
    ("fixture", "config_class", "pipeline_type"),
    [("ctc_backend", "Wav2Vec2Config", "ctc"), ("whisper_backend", "WhisperConfig", "seq2seq_whisper")],
)
def test_describe_is_json_and_names_model_and_versions(request, fixture, config_class, pipeline_type):
    backend = request.getfixturevalue(fixture)

    record = json.loads(json.dumps(backend.describe()))

    assert Path(record["model"]).name.startswith("tiny-")
    assert record["device"] == ("cuda:0" if torch.cuda.is_available() else "cpu")
    assert record["dtype"] in {"float32", "bfloat16", "float16"}
    assert record["batch_size"] == 16
    assert record["config_class"] == config_class
    assert record["pipeline_type"] == pipeline_type
    assert record["sample_rate_hz"] == 16000
    assert record["transformers_version"] == transformers.__version__
    assert record["torch_version"] == torch.__version__


def test_describe_records_generation_settings(whisper_backend):
    record = whisper_backend.describe()

    assert record["generate_kwargs"] == {"language": "en", "max_new_tokens": 8, "num_beams": 1, "do_sample": False}
    assert record["max_new_tokens_rule"] == "fixed at 8"
    assert isinstance(record["pipeline_generation_defaults"], dict)


@pytest.mark.parametrize("fixture", ["ctc_backend", "whisper_backend"])
def test_sample_rate_comes_from_feature_extractor(request, fixture):
    assert request.getfixturevalue(fixture).sample_rate_hz == 16000


def test_missing_model_directory_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"

    with pytest.raises(BackendError, match="no-such-model") as info:
        load_backend("transformers", {"model": str(missing)})
    assert "Check the path" in str(info.value)


def test_directory_without_a_model_names_the_path(tmp_path):
    empty = tmp_path / "empty-model-dir"
    empty.mkdir()

    with pytest.raises(BackendError, match="empty-model-dir") as info:
        load_backend("transformers", {"model": str(empty)})
    assert "save_pretrained" in str(info.value)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"batchsize": "4"}, "did you mean 'batch_size'"),
        ({"batch_size": "0"}, "batch_size='0' is not a whole number"),
        ({"batch_size": "four"}, "batch_size='four' is not a whole number"),
        ({"dtype": "float64"}, "dtype='float64' is not one of"),
        ({"device": "tpu"}, "device='tpu' is not one of"),
        ({"chunk_length_s": "-3"}, "chunk_length_s='-3' is not a positive number"),
        ({"language": "en"}, "only apply to models that generate text"),
    ],
)
def test_bad_options_are_rejected(ctc_dir, options, expected):
    with pytest.raises(BackendError, match=expected):
        load_backend("transformers", {"model": str(ctc_dir), **options})


def test_wrong_sample_rate_is_rejected(ctc_backend):
    with pytest.raises(BackendError, match="8000 Hz but model .* expects 16000 Hz"):
        ctc_backend.transcribe([_request("utt-8k", 1.0, rate_hz=8000)])


def test_cli_run_with_a_local_model_directory_under_noise(ctc_dir, generated_manifest, tmp_path):
    """The whole path a user takes: CLI, manifest, threaded audio preparation with noise, batched model."""
    import json

    from typer.testing import CliRunner

    from harness.cli import app

    arguments = ["run", str(generated_manifest), "--backend", "transformers", "--backend-arg", f"model={ctc_dir}", "--batch-size", "4", "--profile", "white", "--snr", "5"]
    first = CliRunner().invoke(app, [*arguments, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(app, [*arguments, "--batch-size", "3", "--workers", "1", "--out", str(tmp_path / "b")])
    assert second.exit_code == 0, second.output
    from harness.report.data import load_run

    a = load_run(tmp_path / "a", texts=True).frame.set_index(["utterance_id", "condition_key"]).sort_index()
    b = load_run(tmp_path / "b", texts=True).frame.set_index(["utterance_id", "condition_key"]).sort_index()
    assert len(a) == 24 and (a["status"] == "ok").all()
    # Seeded by (seed, utterance, condition): batch size and thread count change nothing.
    assert a["hypothesis"].tolist() == b["hypothesis"].tolist()
    assert a["noise_json"].tolist() == b["noise_json"].tolist()
    record = json.loads((tmp_path / "a" / "run.json").read_text())
    assert record["backend_details"]["name"] == "transformers" and record["conditions"][1]["key"] == "white@5dB"


def test_whisper_decodes_greedily_unless_num_beams_is_given(whisper_dir):
    default = load_backend("transformers", {"model": str(whisper_dir), "language": "en"})
    greedy = load_backend("transformers", {"model": str(whisper_dir), "language": "en", "num_beams": "1"})
    beams = load_backend("transformers", {"model": str(whisper_dir), "language": "en", "num_beams": "3", "max_new_tokens": "6"})

    assert default.describe()["generate_kwargs"]["num_beams"] == 1
    assert beams.describe()["generate_kwargs"]["num_beams"] == 3
    request = _request("greedy", 1.0)
    assert default.transcribe([request]) == greedy.transcribe([request])


def test_whisper_generation_is_bounded_by_audio_duration(whisper_dir):
    """The random decoder never stops by itself on this clip: only the duration bound ends it."""
    backend = load_backend("transformers", {"model": str(whisper_dir), "language": "en"})
    bound = backend.max_new_tokens_for(3.0)
    assert bound == 25 * 3 + 10 and backend.max_new_tokens_for(60.0) == 448 - 4

    text = backend.transcribe([_request("loops", 3.0)])[0]

    # The tokenizer has no merges, so each generated token is one character.
    assert bound - 2 <= len(text) <= bound
    assert "ceil(25 x each clip's own seconds)" in backend.describe()["max_new_tokens_rule"]


@pytest.fixture(scope="module")
def whisper_letters_dir(whisper_dir, tmp_path_factory) -> Path:
    """The tiny Whisper, allowed to generate only a-z and end-of-text: one character per token, and no
    timestamp tokens (which the random decoder otherwise emits, sending Whisper into further segments)."""
    import shutil
    import string

    from transformers import GenerationConfig, WhisperTokenizer

    directory = tmp_path_factory.mktemp("tiny-whisper-letters")
    shutil.copytree(whisper_dir, directory, dirs_exist_ok=True)
    tokenizer = WhisperTokenizer.from_pretrained(directory)
    allowed = {tokenizer.convert_tokens_to_ids(char) for char in string.ascii_lowercase} | {tokenizer.convert_tokens_to_ids("<|endoftext|>")}
    generation = GenerationConfig.from_pretrained(directory)
    generation.suppress_tokens = [token for token in range(len(tokenizer)) if token not in allowed]
    generation.save_pretrained(directory)
    return directory


def test_each_clip_of_a_batch_is_bounded_by_its_own_duration(whisper_letters_dir):
    """A short clip batched with longer ones keeps its own bound: its transcript is the one it gets alone.
    (The random decoder never stops, so a bound shared by the batch would run it to the longest clip's.)"""
    alone = load_backend("transformers", {"model": str(whisper_letters_dir), "language": "en"})
    batched = load_backend("transformers", {"model": str(whisper_letters_dir), "language": "en", "batch_size": "4"})
    clips = [_request("short", 0.5), _request("long", 3.0), _request("middle", 1.3), _request("shortest", 0.2)]

    together = batched.transcribe(clips)

    assert together == [alone.transcribe([clip])[0] for clip in clips]
    assert [len(text) for text in together] == [alone.max_new_tokens_for(clip.samples.size / RATE_HZ) for clip in clips] == [23, 85, 43, 15]
    assert "each clip's own seconds" in batched.describe()["max_new_tokens_rule"]


def test_row_token_bounds_end_each_row_at_its_own_bound():
    from harness.backends.transformers import _RowTokenBounds

    processor = _RowTokenBounds([1, 3], [7], beams=2)  # rows 0-1 are item 0's beams, rows 2-3 item 1's
    prompt = torch.zeros((4, 4), dtype=torch.long)
    scores = torch.zeros((4, 10))
    assert torch.equal(processor(prompt, scores), scores)  # nothing generated yet
    after_one = processor(torch.zeros((4, 5), dtype=torch.long), scores)
    assert torch.isneginf(after_one[:2]).sum() == 2 * 9 and (after_one[:2, 7] == 0).all()  # item 0: only end-of-text
    assert torch.equal(after_one[2:], scores[2:]) and torch.equal(scores, torch.zeros((4, 10)))  # item 1 free; input untouched
    assert torch.isneginf(processor(torch.zeros((4, 7), dtype=torch.long), scores)[2:]).sum() == 2 * 9  # item 1 at 3
    # A new generate() call (Whisper's next segment) counts from its own prompt again.
    assert torch.equal(processor(torch.zeros((4, 4), dtype=torch.long), scores), scores)
    # Whisper dropped finished rows: the rows no longer match the items, so only max_new_tokens applies.
    assert torch.equal(processor(torch.zeros((2, 9), dtype=torch.long), torch.zeros((2, 10))), torch.zeros((2, 10)))


def test_progress_is_reported_inside_a_batch(whisper_dir):
    backend = load_backend("transformers", {"model": str(whisper_dir), "language": "en", "max_new_tokens": "2", "batch_size": "2"})
    seen: list[int] = []
    backend.set_progress(seen.append)

    backend.transcribe(MIXED_LENGTHS[:5])

    assert seen == [2, 4, 5]
