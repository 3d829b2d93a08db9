"""Recorded noise: random segment, looping, downmix and resampling, decoded once per run."""

import numpy as np
import pytest
import soundfile

from harness.noise._base import Context
from harness.noise._spec import Fields
from harness.noise.recorded import RecordedNoise, clear_cache, decoded_noise, looped_segment

RATE_HZ = 16000


def make_source(tmp_path, files):
    return RecordedNoise.from_spec(Fields({"files": [str(f) for f in files]}, file="t.yaml", field="source", base_dir=tmp_path), type="recorded")


def test_looped_segment_wraps_around():
    audio = np.arange(10, dtype=np.float32)
    assert looped_segment(audio, 7, 8).tolist() == [7, 8, 9, 0, 1, 2, 3, 4]
    assert looped_segment(audio, 2, 3).tolist() == [2, 3, 4]
    assert looped_segment(audio, 0, 25).tolist() == list(range(10)) * 2 + [0, 1, 2, 3, 4]


def test_short_recording_is_looped_to_utterance_length(tmp_path):
    ramp = np.linspace(-0.5, 0.5, RATE_HZ, dtype=np.float32)  # 1 s recording, 3 s utterance
    soundfile.write(tmp_path / "short.wav", ramp, RATE_HZ, subtype="FLOAT")
    source = make_source(tmp_path, [tmp_path / "short.wav"])
    context = Context(rate_hz=RATE_HZ)
    drawn = source.draw(np.random.default_rng(0), n_samples=3 * RATE_HZ, context=context)
    noise, record = source.generate(drawn, n_samples=3 * RATE_HZ, context=context)
    assert record["looped"] is True and 0 <= record["offset_s"] < 1.0
    expected = np.take(ramp, (np.arange(3 * RATE_HZ) + drawn.offset_samples) % RATE_HZ)
    assert np.array_equal(noise, expected)


def test_long_recording_segment_fits_without_looping(tmp_path):
    rng = np.random.default_rng(0)
    soundfile.write(tmp_path / "long.wav", 0.1 * rng.standard_normal(5 * RATE_HZ), RATE_HZ)
    source = make_source(tmp_path, [tmp_path / "long.wav"])
    context = Context(rate_hz=RATE_HZ)
    offsets = set()
    for seed in range(20):
        drawn = source.draw(np.random.default_rng(seed), n_samples=RATE_HZ, context=context)
        _, record = source.generate(drawn, n_samples=RATE_HZ, context=context)
        assert record["looped"] is False and 0 <= drawn.offset_samples <= 4 * RATE_HZ
        offsets.add(drawn.offset_samples)
    assert len(offsets) == 20


def test_stereo_44k_is_downmixed_and_resampled(tmp_path):
    t = np.arange(44100 * 2) / 44100
    left = 0.2 * np.sin(2 * np.pi * 440 * t)
    soundfile.write(tmp_path / "st.wav", np.stack([left, left], axis=1), 44100)
    clear_cache()
    audio = decoded_noise(tmp_path / "st.wav", RATE_HZ)
    assert audio.ndim == 1 and audio.size == 2 * RATE_HZ and audio.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.fft.rfftfreq(audio.size, 1 / RATE_HZ)[np.argmax(spectrum)] == pytest.approx(440, abs=1)


def test_decoded_once_per_rate(tmp_path):
    soundfile.write(tmp_path / "a.wav", np.full(RATE_HZ, 0.1, dtype=np.float32), RATE_HZ)
    clear_cache()
    first = decoded_noise(tmp_path / "a.wav", RATE_HZ)
    assert decoded_noise(tmp_path / "a.wav", RATE_HZ) is first
    assert decoded_noise(tmp_path / "a.wav", 8000) is not first
    assert not first.flags.writeable


def test_folder_source_lists_audio_files_sorted(tmp_path):
    for name in ["b.wav", "a.flac", "notes.txt"]:
        if name.endswith("txt"):
            (tmp_path / name).write_text("x")
        else:
            soundfile.write(tmp_path / name, np.full(RATE_HZ, 0.1, dtype=np.float32), RATE_HZ)
    source = RecordedNoise.from_spec(Fields({"folder": str(tmp_path)}, file="t.yaml", field="source"), type="recorded")
    assert [f.path.name for f in source.files] == ["a.flac", "b.wav"]


def test_corrupt_recording_fails_at_prepare_naming_the_profile(tmp_path):
    from harness.errors import ConfigError
    from harness.noise import prepare
    from harness.noise.profile import profile_from_mapping

    (tmp_path / "bad.wav").write_bytes(b"RIFF" + bytes(range(256)) * 8)
    profile = profile_from_mapping({"name": "t", "transforms": [{"type": "additive", "source": {"type": "recorded", "files": ["bad.wav"]}}]},
                                   file=str(tmp_path / "t.yaml"), base_dir=tmp_path)
    clear_cache()
    with pytest.raises(ConfigError, match=r"t\.yaml: field 'transforms\[0\]\.source\.files\[0\]' .*bad\.wav.*noise recording cannot be used"):
        prepare(profile, RATE_HZ)
