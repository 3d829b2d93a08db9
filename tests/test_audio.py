"""Tests for harness.audio: decoding each container, downmix, resampling and the errors bad files raise."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from harness.audio import load_audio, read_audio, resample, to_mono, write_audio
from harness.errors import AudioError

SHARED = Path(__file__).parents[1].parent / "shared" / "data"
TRAM_M4A = SHARED / "noise" / "recordings" / "berlin_street_tram.m4a"


def sine(*, freq_hz: float, rate_hz: int, duration_s: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate_hz * duration_s)) / rate_hz
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def peak_hz(samples: np.ndarray, rate_hz: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate_hz)[np.argmax(spectrum)])


@pytest.mark.parametrize(
    ("suffix", "subtype", "tolerance"),
    [
        ("wav", "PCM_16", 1 / 32767 + 1e-6),  # 16-bit quantisation step
        ("flac", "PCM_16", 1 / 32767 + 1e-6),
        ("ogg", "VORBIS", 0.05),  # lossy: a loose bound that still catches wrong scaling or rate
    ],
)
def test_round_trip_keeps_samples_and_rate(tmp_path, suffix, subtype, tolerance):
    original = sine(freq_hz=440, rate_hz=22050, duration_s=0.5)
    path = tmp_path / f"tone.{suffix}"
    soundfile.write(str(path), original, 22050, subtype=subtype)

    samples, rate_hz = read_audio(path)

    assert rate_hz == 22050
    assert samples.dtype == np.float32
    assert samples.shape[1] == 1
    # Vorbis may pad or trim a few frames at the edges; compare the overlap away from them.
    n = min(len(original), samples.shape[0])
    assert abs(samples.shape[0] - len(original)) <= 1024
    np.testing.assert_allclose(samples[1024 : n - 1024, 0], original[1024 : n - 1024], atol=tolerance)


def test_write_audio_then_load_audio_round_trips(tmp_path):
    original = sine(freq_hz=300, rate_hz=16000, duration_s=0.25)
    write_audio(tmp_path / "sub" / "tone.flac", original, 16000)
    np.testing.assert_allclose(load_audio(tmp_path / "sub" / "tone.flac", 16000), original, atol=1 / 32767 + 1e-6)


def test_write_audio_clips_out_of_range_samples(tmp_path):
    write_audio(tmp_path / "loud.wav", np.array([2.0, -2.0, 0.25], dtype=np.float32), 16000)
    samples, _ = read_audio(tmp_path / "loud.wav")
    np.testing.assert_allclose(samples[:, 0], [32767 / 32768, -1.0, 0.25], atol=1e-4)


def test_stereo_is_averaged_to_mono(tmp_path):
    left = np.full(1000, 0.5, dtype=np.float32)
    right = np.full(1000, -0.25, dtype=np.float32)
    path = tmp_path / "stereo.wav"
    soundfile.write(str(path), np.stack([left, right], axis=1), 16000, subtype="FLOAT")

    samples, rate_hz = read_audio(path)
    mono = to_mono(samples)

    assert samples.shape == (1000, 2)
    assert mono.shape == (1000,)
    assert mono.dtype == np.float32
    np.testing.assert_allclose(mono, 0.125, atol=1e-7)
    np.testing.assert_allclose(load_audio(path, rate_hz), 0.125, atol=1e-7)


def test_to_mono_passes_one_dimensional_input_through():
    samples = np.array([0.1, -0.2], dtype=np.float64)
    mono = to_mono(samples)
    assert mono.dtype == np.float32
    np.testing.assert_allclose(mono, samples, atol=1e-7)


def test_resampling_keeps_tone_frequency_and_duration():
    tone = sine(freq_hz=1000, rate_hz=44100, duration_s=1.0)

    resampled = resample(tone, 44100, 16000)

    assert resampled.dtype == np.float32
    assert len(resampled) == 16000
    assert peak_hz(resampled, 16000) == pytest.approx(1000, abs=2)
    # A band-limited resampler keeps the tone's level; a sign of aliasing or a scaling bug if not.
    assert np.sqrt(np.mean(resampled[1000:-1000] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)


def test_resampling_at_the_same_rate_is_a_no_op():
    tone = sine(freq_hz=1000, rate_hz=16000, duration_s=0.1)
    np.testing.assert_array_equal(resample(tone, 16000, 16000), tone)


def test_load_audio_resamples_a_44k_stereo_file(tmp_path):
    tone = sine(freq_hz=1000, rate_hz=44100, duration_s=0.5)
    path = tmp_path / "phone.wav"
    soundfile.write(str(path), np.stack([tone, tone], axis=1), 44100)

    samples = load_audio(path, 16000)

    assert samples.ndim == 1
    assert len(samples) == 8000
    assert peak_hz(samples, 16000) == pytest.approx(1000, abs=4)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_m4a_decodes_through_pyav(tmp_path):
    path = tmp_path / "tone.m4a"
    reference = tmp_path / "tone_decoded_by_ffmpeg.wav"
    ffmpeg = ["ffmpeg", "-nostdin", "-loglevel", "error"]
    subprocess.run(
        [*ffmpeg, "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100:duration=1",
         "-ac", "2", "-c:a", "aac", "-b:a", "128k", str(path)],
        check=True,
    )
    subprocess.run([*ffmpeg, "-i", str(path), "-c:a", "pcm_f32le", str(reference)], check=True)
    with pytest.raises(soundfile.LibsndfileError):
        soundfile.info(str(path))  # proves this test exercises the fallback, not libsndfile

    samples, rate_hz = read_audio(path)
    mono = load_audio(path, 16000)

    assert rate_hz == 44100
    assert samples.dtype == np.float32
    assert samples.shape[1] == 2
    # The ffmpeg command line's own decode is the ground truth for level, channel order and length.
    expected, _ = soundfile.read(str(reference), dtype="float32", always_2d=True)
    assert samples.shape == expected.shape
    np.testing.assert_allclose(samples, expected, atol=1e-5)
    # AAC adds priming frames; allow one 1024-sample frame either side plus a little.
    assert abs(len(mono) - 16000) <= 800
    assert peak_hz(mono, 16000) == pytest.approx(1000, abs=3)


@pytest.mark.skipif(not TRAM_M4A.is_file(), reason=f"{TRAM_M4A} is not present")
def test_real_phone_m4a_decodes():
    samples, rate_hz = read_audio(TRAM_M4A)
    mono = load_audio(TRAM_M4A, 16000)

    assert rate_hz in (44100, 48000)
    # The shared data README says the recording lasts 2 min 15 s.
    assert samples.shape[0] / rate_hz == pytest.approx(135, abs=1.5)
    assert len(mono) / 16000 == pytest.approx(samples.shape[0] / rate_hz, abs=0.01)
    assert np.all(np.isfinite(mono))
    assert 0.001 < np.sqrt(np.mean(mono**2)) < 0.9


def test_corrupt_file_raises_audio_error_naming_the_path(tmp_path):
    path = tmp_path / "garbage.wav"
    path.write_bytes(np.random.default_rng(7).bytes(4096))

    with pytest.raises(AudioError, match="garbage.wav") as info:
        read_audio(path)
    assert str(path) in str(info.value)


def test_empty_file_raises_audio_error(tmp_path):
    path = tmp_path / "empty.flac"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="empty.flac"):
        load_audio(path, 16000)


def test_file_with_no_samples_raises_audio_error(tmp_path):
    path = tmp_path / "silent.wav"
    soundfile.write(str(path), np.zeros((0, 1), dtype=np.float32), 16000)
    with pytest.raises(AudioError, match="no samples"):
        read_audio(path)


def test_missing_file_raises_audio_error(tmp_path):
    path = tmp_path / "nowhere.wav"
    with pytest.raises(AudioError, match="not found") as info:
        load_audio(path, 16000)
    assert str(path) in str(info.value)


def test_directory_is_not_an_audio_file(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        read_audio(tmp_path)


def chirp(rate_hz: int = 16000, duration_s: float = 4.0) -> np.ndarray:
    """A rising tone: every span of it differs from every other, so a segment off by a few samples shows."""
    t = np.arange(int(rate_hz * duration_s)) / rate_hz
    return (0.3 * np.sin(2 * np.pi * (200 + 150 * t) * t)).astype(np.float32)


def write_m4a_with_pyav(path: Path, samples: np.ndarray, rate_hz: int) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate_hz, layout="mono")
        frame_size = stream.codec_context.frame_size or 1024
        for start in range(0, len(samples), frame_size):
            block = samples[start : start + frame_size].reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(block), format="flt", layout="mono")
            frame.sample_rate = rate_hz
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def encoded(tmp_path: Path, suffix: str) -> Path:
    path = tmp_path / f"chirp.{suffix}"
    if suffix == "m4a":
        write_m4a_with_pyav(path, chirp(), 16000)
        with pytest.raises(soundfile.LibsndfileError):
            soundfile.info(str(path))  # so this case goes through PyAV
    else:
        soundfile.write(str(path), chirp(), 16000)
    return path


@pytest.mark.parametrize("suffix", ["wav", "flac", "ogg", "mp3", "m4a"])
@pytest.mark.parametrize(("offset_s", "duration_s"), [(1.25, 0.5), (0.3, None), (3.5, 0.5), (0.0, 1.0)])
def test_a_segment_is_the_same_span_of_the_whole_decode(tmp_path, suffix, offset_s, duration_s):
    """NeMo's offset and duration: only the segment comes back, sample for sample what a whole-file decode holds there."""
    path = encoded(tmp_path, suffix)
    whole, rate_hz = read_audio(path)
    segment, segment_rate_hz = read_audio(path, offset_s=offset_s, duration_s=duration_s)
    start = round(offset_s * rate_hz)
    expected = whole[start:] if duration_s is None else whole[start : start + round(duration_s * rate_hz)]
    assert segment_rate_hz == rate_hz
    assert segment.shape == expected.shape
    np.testing.assert_array_equal(segment, expected)


def test_a_segment_of_in_memory_audio(tmp_path):
    import io

    path = encoded(tmp_path, "flac")
    whole, _ = read_audio(path)
    segment, _ = read_audio(io.BytesIO(path.read_bytes()), offset_s=2.0, duration_s=0.25)
    np.testing.assert_array_equal(segment, whole[32000:36000])


def test_load_audio_resamples_only_the_segment(tmp_path):
    path = tmp_path / "tone.wav"
    soundfile.write(str(path), np.concatenate([sine(freq_hz=300, rate_hz=44100, duration_s=1.0), sine(freq_hz=1200, rate_hz=44100, duration_s=1.0)]), 44100)
    second = load_audio(path, 16000, offset_s=1.1, duration_s=0.8)
    assert len(second) == 12800 and peak_hz(second, 16000) == pytest.approx(1200, abs=3)


@pytest.mark.parametrize("suffix", ["wav", "mp3", "m4a"])
@pytest.mark.parametrize(
    ("offset_s", "duration_s", "message"),
    [(5.0, None, "offset 5 s is at or past the end of the audio"), (3.0, 3.0, "segment 3–6 s runs past the end of the audio")],
)
def test_a_segment_outside_the_file_is_an_error(tmp_path, suffix, offset_s, duration_s, message):
    path = encoded(tmp_path, suffix)
    with pytest.raises(AudioError, match=message) as caught:
        read_audio(path, offset_s=offset_s, duration_s=duration_s)
    assert str(path) in str(caught.value) and "Fix the utterance's offset" in str(caught.value)


def test_a_duration_a_little_past_the_end_is_read_to_the_end(tmp_path):
    """Manifests round durations: up to SEGMENT_END_TOLERANCE_S past the end reads what is there."""
    path = encoded(tmp_path, "wav")
    segment, _ = read_audio(path, offset_s=3.5, duration_s=1.2)
    assert len(segment) == 8000


@pytest.mark.parametrize("suffix", ["wav", "flac", "mp3", "m4a"])
def test_audio_longer_than_the_limit_is_refused(tmp_path, suffix):
    path = encoded(tmp_path, suffix)
    with pytest.raises(AudioError, match=r"audio is 4\.\d s long, more than the limit of 2 s per utterance") as caught:
        read_audio(path, max_duration_s=2.0)
    assert "--max-duration-s" in str(caught.value)
    samples, _ = read_audio(path, offset_s=1.0, duration_s=1.5, max_duration_s=2.0)  # a segment within the limit is fine
    assert len(samples) == 24000
    with pytest.raises(AudioError, match=r"segment is 3\.0 s long"):
        read_audio(path, offset_s=0.5, duration_s=3.0, max_duration_s=2.0)
