"""`asrfair run --backend transformers` against a bare batched `generate` loop on the same audio.

No model can be downloaded here, so both sides run the same randomly initialised Whisper with
whisper-tiny's shape (4+4 layers, d_model 384), saved to a temporary directory; its byte-level
vocabulary is 1,865 tokens instead of 51,865. Both decode greedily with the same token cap, and both
include decoding and resampling the audio. The asrfair side is the library call the CLI makes
(run_evaluation: threads preparing audio, the pipeline, scoring, SQLite writes).

    .venv/bin/python benchmarks/transformers_backend.py [--utterances 32] [--batch-size 16] [--max-new-tokens 32]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_model(directory: Path) -> Path:
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import GenerationConfig, WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    vocab = {char: i for i, char in enumerate(sorted(ByteLevel.alphabet()))}
    specials = ["<|startoftranscript|>", *[f"<|{code}|>" for code in LANGUAGES], "<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>", "<|notimestamps|>"]
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[], pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.add_tokens([f"<|{i * 0.02:.2f}|>" for i in range(1501)])
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in ["<|endoftext|>", *specials]}
    eot = ids["<|endoftext|>"]
    config = WhisperConfig(vocab_size=len(tokenizer), num_mel_bins=80, d_model=384, encoder_layers=4, decoder_layers=4, encoder_attention_heads=6, decoder_attention_heads=6,
                           encoder_ffn_dim=1536, decoder_ffn_dim=1536, pad_token_id=eot, bos_token_id=eot, eos_token_id=eot, decoder_start_token_id=ids["<|startoftranscript|>"])
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], bos_token_id=eot, eos_token_id=eot, pad_token_id=eot, no_timestamps_token_id=ids["<|notimestamps|>"],
        prev_sot_token_id=ids["<|startofprev|>"], lang_to_id={f"<|{c}|>": ids[f"<|{c}|>"] for c in LANGUAGES},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}, is_multilingual=True, max_initial_timestamp_index=50, max_length=448,
    )
    model.save_pretrained(directory)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer).save_pretrained(directory)
    return directory


def bare_loop(model_dir: Path, paths: list[Path], batch_size: int, max_new_tokens: int) -> tuple[float, list[str]]:
    """What a person would write: load, features, generate, decode, batch by batch."""
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from harness.audio import load_audio

    processor = WhisperProcessor.from_pretrained(model_dir)
    model = WhisperForConditionalGeneration.from_pretrained(model_dir).eval()
    kwargs = {"language": "en", "task": "transcribe", "num_beams": 1, "do_sample": False, "max_new_tokens": max_new_tokens}

    def run(batch_paths: list[Path]) -> list[str]:
        audio = [load_audio(path, 16000) for path in batch_paths]
        features = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
        with torch.inference_mode():
            tokens = model.generate(features, **kwargs)
        return [text.strip() for text in processor.batch_decode(tokens, skip_special_tokens=True)]

    run(paths[:1])  # warm-up, as the backend does with a second of silence
    started = time.perf_counter()
    texts = [text for i in range(0, len(paths), batch_size) for text in run(paths[i : i + batch_size])]
    return time.perf_counter() - started, texts


def asrfair_run(model_dir: Path, manifest_path: Path, out_dir: Path, batch_size: int, max_new_tokens: int) -> tuple[float, list[str]]:
    from harness.backends import load_backend
    from harness.manifest import load_manifest
    from harness.report.data import load_run
    from harness.runner import run_evaluation

    manifest = load_manifest(manifest_path)
    backend = load_backend("transformers", {"model": str(model_dir), "device": "cpu", "language": "en", "task": "transcribe", "batch_size": str(batch_size), "max_new_tokens": str(max_new_tokens)})
    started = time.perf_counter()
    run_evaluation(manifest, backend, out_dir=out_dir, batch_size=batch_size)
    seconds = time.perf_counter() - started
    frame = load_run(out_dir).frame.set_index("utterance_id").loc[[u.id for u in manifest]]
    return seconds, frame["hypothesis"].fillna("").tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import soundfile
    import torch
    import transformers

    from tests.servers import demo_manifest

    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        model_dir = build_model(tmp_path / "model")
        manifest_path = demo_manifest(tmp_path, args.utterances)
        from harness.manifest import load_manifest

        paths = [u.audio for u in load_manifest(manifest_path)]
        audio_s = sum(soundfile.info(str(p)).duration for p in paths)
        ours, theirs = [], []
        for repeat in range(args.repeats):
            seconds, bare_texts = bare_loop(model_dir, paths, args.batch_size, args.max_new_tokens)
            theirs.append(seconds)
            seconds, our_texts = asrfair_run(model_dir, manifest_path, tmp_path / f"run{repeat}", args.batch_size, args.max_new_tokens)
            ours.append(seconds)
        same = sum(a == b for a, b in zip(bare_texts, our_texts, strict=True))
    best_ours, best_theirs = min(ours), min(theirs)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, transformers {transformers.__version__}, no GPU")
    print(f"audio: {args.utterances} demo utterances, {audio_s:.1f} s; batch {args.batch_size}; greedy; max_new_tokens {args.max_new_tokens}; best of {args.repeats}")
    print(f"bare generate loop:        {best_theirs:6.2f} s  RTFx {audio_s / best_theirs:6.1f}   (all: {', '.join(f'{s:.2f}' for s in theirs)})")
    print(f"asrfair run (transformers): {best_ours:6.2f} s  RTFx {audio_s / best_ours:6.1f}   (all: {', '.join(f'{s:.2f}' for s in ours)})")
    print(f"ratio asrfair / bare (time): {best_ours / best_theirs:.2f}; identical transcripts: {same} of {len(our_texts)}")


if __name__ == "__main__":
    main()
