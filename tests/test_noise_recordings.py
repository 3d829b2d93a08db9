"""`asrfair noise add`: real recordings in any format become profiles; unusable ones are rejected by name."""

from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

from harness.errors import ConfigError
from harness.noise import add_recordings, apply_profile, condition_key, load_profile, prepare, snr_db_of
from harness.noise.recorded import sha256_of
from harness.seeding import rng_for

RATE_HZ = 16000
SHARED_NOISE = Path(__file__).parents[1].parent / "shared" / "data" / "noise"
RECORDINGS = SHARED_NOISE / "recordings"


def voice(n_samples):
    t = np.arange(n_samples) / RATE_HZ
    phase = 2 * np.pi * np.cumsum(110 + 20 * np.sin(2 * np.pi * 0.5 * t)) / RATE_HZ
    return (0.1 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * sum(np.sin(k * phase) / k for k in range(1, 12))).astype(np.float32)


@pytest.mark.parametrize("file_name, rate_hz, channels", [
    ("doing_the_dishes.wav", 16000, 1),
    ("berlin_fireworks_outdoor_stereo_44k.wav", 44100, 2),
    ("berlin_street_tram.m4a", 44100, 2),
])
def test_real_recording_becomes_a_profile_mixed_at_5_db(tmp_path, file_name, rate_hz, channels):
    source = RECORDINGS / file_name
    if not source.is_file():
        pytest.skip(f"shared recording {source} not present")
    written = add_recordings([source], name="mine", directory=tmp_path)
    document = yaml.safe_load(written.read_text())
    entry = document["transforms"][0]["source"]["files"][0]
    assert Path(entry["path"]).is_absolute() and entry["path"] == str(source.resolve())
    assert entry["sha256"] == sha256_of(source)
    assert (entry["rate_hz"], entry["channels"]) == (rate_hz, channels)

    profile = prepare(load_profile(written), RATE_HZ)
    assert profile.name == "mine" and profile.uses_snr
    x = voice(RATE_HZ * 3)
    y, records = apply_profile(profile, x, RATE_HZ, snr_db=5.0, rng=rng_for(1, "utt", condition_key("mine", 5.0)))
    assert abs(snr_db_of(x, y) - 5.0) < 0.1
    assert abs(records[0]["measured_snr_db"] - 5.0) < 0.1
    used = records[0]["sources"][0]
    assert used["file"] == str(source.resolve()) and used["offset_s"] >= 0 and used["sha256"] == entry["sha256"]


def test_folder_and_default_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASRFAIR_HOME", str(tmp_path / "home"))
    folder = tmp_path / "rec"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    soundfile.write(folder / "a.wav", 0.1 * rng.standard_normal(2 * 22050), 22050)
    soundfile.write(folder / "sub" / "b.flac", 0.1 * rng.standard_normal((2 * 48000, 2)), 48000)
    (folder / "readme.txt").write_text("not audio")
    written = add_recordings([folder], name="kitchen")
    assert written == tmp_path / "home" / "noise_profiles" / "kitchen.yaml"
    profile = load_profile("kitchen")
    assert [f.path.name for f in profile.transforms[0].parts[0].source.files] == ["a.wav", "b.flac"]
    with pytest.raises(ConfigError, match="already exists"):
        add_recordings([folder], name="kitchen")
    assert add_recordings([folder / "a.wav"], name="kitchen", overwrite=True) == written
    assert len(load_profile("kitchen").transforms[0].parts[0].source.files) == 1


@pytest.fixture
def bad_files(tmp_path):
    files = {}
    files["silent"] = tmp_path / "silent.wav"
    soundfile.write(files["silent"], np.zeros(3 * RATE_HZ, dtype=np.float32), RATE_HZ)
    files["quiet"] = tmp_path / "quiet.wav"
    soundfile.write(files["quiet"], (10 ** (-70 / 20) * np.sign(np.sin(np.arange(3 * RATE_HZ)))).astype(np.float32), RATE_HZ, subtype="FLOAT")
    files["short"] = tmp_path / "short.wav"
    soundfile.write(files["short"], 0.1 * np.random.default_rng(0).standard_normal(RATE_HZ // 2), RATE_HZ)
    files["corrupt"] = tmp_path / "corrupt.m4a"
    files["corrupt"].write_bytes(np.random.default_rng(1).bytes(5000))
    files["missing"] = tmp_path / "missing.wav"
    return files


@pytest.mark.parametrize("kind, message", [
    ("silent", r"silent\.wav: is silent \(digital silence; the minimum is -60 dBFS\)\. Check the microphone"),
    ("quiet", r"quiet\.wav: is silent \(RMS -70\.0 dBFS; the minimum is -60 dBFS\)"),
    ("short", r"short\.wav: is too short to use as noise \(0\.500 s; the minimum is 1 s\)\. Use a recording"),
    ("corrupt", r"corrupt\.m4a: cannot be decoded, the file looks corrupt"),
    ("missing", r"missing\.wav: no such file or folder"),
])
def test_unusable_recordings_are_rejected_by_name(tmp_path, bad_files, kind, message):
    with pytest.raises(ConfigError, match=message):
        add_recordings([bad_files[kind]], name="bad", directory=tmp_path / "out")
    assert not (tmp_path / "out" / "bad.yaml").exists()


def test_all_problems_reported_together_and_nothing_written(tmp_path, bad_files):
    good = tmp_path / "good.wav"
    soundfile.write(good, 0.1 * np.random.default_rng(2).standard_normal(2 * RATE_HZ), RATE_HZ)
    with pytest.raises(ConfigError) as info:
        add_recordings([good, *bad_files.values()], name="mixed", directory=tmp_path / "out")
    message = str(info.value)
    assert message.startswith("5 recording(s) cannot be used for noise profile 'mixed'; nothing was written:")
    assert all(path.name in message for path in bad_files.values()) and "good.wav" not in message
    assert not (tmp_path / "out").exists()


def test_bad_names_and_empty_folder(tmp_path):
    with pytest.raises(ConfigError, match="reserved for the baseline"):
        add_recordings([tmp_path], name="clean", directory=tmp_path)
    with pytest.raises(ConfigError, match="is not a usable profile name"):
        add_recordings([tmp_path], name="my noise", directory=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="folder holds no audio files"):
        add_recordings([tmp_path / "empty"], name="e", directory=tmp_path)


def test_recording_deleted_after_adding_fails_on_load(tmp_path):
    noise = tmp_path / "n.wav"
    soundfile.write(noise, 0.1 * np.random.default_rng(2).standard_normal(2 * RATE_HZ), RATE_HZ)
    written = add_recordings([noise], name="gone", directory=tmp_path)
    noise.unlink()
    with pytest.raises(ConfigError, match=r"gone\.yaml: field 'transforms\[0\]\.source\.files\[0\]\.path'.*does not exist"):
        load_profile(written)
