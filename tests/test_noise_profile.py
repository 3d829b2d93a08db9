"""Profiles: lookup order, validation messages, the built-in set, and seeding by (seed, utterance, condition)."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import yaml

from harness.errors import ConfigError
from harness.noise import (
    CLEAN_CONDITION,
    apply_profile,
    asrfair_home,
    condition_key,
    list_profiles,
    load_profile,
    parse_snr_values,
    prepare,
)
from harness.noise.profile import builtin_profiles_dir
from harness.noise.recorded import sha256_of
from harness.seeding import rng_for

RATE_HZ = 16000
BUILTIN = sorted(p.stem for p in builtin_profiles_dir().glob("*.yaml"))


def voice(n_samples, seed=0):
    t = np.arange(n_samples) / RATE_HZ
    phase = 2 * np.pi * np.cumsum(120 + 15 * np.sin(2 * np.pi * 0.4 * t)) / RATE_HZ
    rng = np.random.default_rng(seed)
    return (0.1 * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t + seed)) * sum(np.sin(k * phase) / k for k in range(1, 12))
            + 0.001 * rng.standard_normal(n_samples)).astype(np.float32)


UTTERANCES = {f"utt{k}": voice(RATE_HZ + 1000 * k, seed=k) for k in range(4)}


def pool_excluding(utterance_id):
    others = [(k, v) for k, v in UTTERANCES.items() if k != utterance_id]

    def pool(n, rng):
        return [others[i] for i in rng.choice(len(others), size=min(n, len(others)), replace=False)]

    return pool


def run(profile, utterance_id, snr_db, seed=7):
    rng = rng_for(seed, utterance_id, condition_key(profile.name, snr_db))
    return apply_profile(profile, UTTERANCES[utterance_id], RATE_HZ, snr_db=snr_db, rng=rng, babble_pool=pool_excluding(utterance_id))


def write_profile(directory: Path, name: str, description: str, transforms=None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "description": description,
                                    "transforms": transforms or [{"type": "additive", "source": {"type": "white"}}]}))
    return path


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """cwd and ASRFAIR_HOME in tmp dirs, so lookups cannot see the user's profiles."""
    cwd = tmp_path / "work"
    home = tmp_path / "home"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("ASRFAIR_HOME", str(home))
    return cwd / "noise_profiles", home / "noise_profiles"


# -- built-in set ------------------------------------------------------------------------------

def test_builtin_set_is_the_documented_one():
    assert set(BUILTIN) >= {"white", "pink", "brown", "babble", "cafe", "telephone", "hospital-hum", "reverberant-room", "mp3-low", "packet-loss"}


@pytest.mark.parametrize("name", BUILTIN)
def test_every_builtin_profile_loads_and_applies(name, isolated):
    profile = prepare(load_profile(name), RATE_HZ)
    assert profile.source_path.parent == builtin_profiles_dir().resolve()
    snr_db = 5.0 if profile.uses_snr else None
    y, records = run(profile, "utt1", snr_db)
    x = UTTERANCES["utt1"]
    assert y.shape == x.shape and y.dtype == np.float32 and np.all(np.isfinite(y))
    assert not np.array_equal(x, y)
    assert len(records) == len(profile.transforms)
    json.dumps(records)  # JSON-able
    for record in records:
        if record["type"] == "additive":
            assert abs(record["measured_snr_db"] - 5.0) < 0.1


# -- seeding -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["pink", "babble", "packet-loss", "reverberant-room"])
def test_same_key_same_output_other_utterance_or_condition_differs(name, isolated):
    profile = load_profile(name)
    snr_db = 10.0 if profile.uses_snr else None
    a, records_a = run(profile, "utt2", snr_db)
    b, records_b = run(profile, "utt2", snr_db)
    assert np.array_equal(a, b) and records_a == records_b
    # the noise drawn for utt2 differs from that drawn for utt3 (compare the noise, lengths differ)
    _, records_c = run(profile, "utt3", snr_db)
    assert records_c[0]["step_seed"] != records_a[0]["step_seed"]
    c, _ = run(profile, "utt2", snr_db, seed=8)
    assert not np.array_equal(a, c)


def test_order_does_not_matter(isolated):
    profile = load_profile("babble")
    forward = {u: run(profile, u, 5.0)[0] for u in UTTERANCES}
    backward = {u: run(profile, u, 5.0)[0] for u in reversed(list(UTTERANCES))}
    assert all(np.array_equal(forward[u], backward[u]) for u in UTTERANCES)


def test_snr_conditions_draw_different_noise(isolated):
    profile = load_profile("white")
    _, at_10 = run(profile, "utt0", 10.0)
    _, at_5 = run(profile, "utt0", 5.0)
    assert at_10[0]["sources"][0]["seed"] != at_5[0]["sources"][0]["seed"]


# -- lookup order ------------------------------------------------------------------------------

def test_lookup_order_path_cwd_home_builtin(isolated, tmp_path):
    cwd_dir, home_dir = isolated
    write_profile(cwd_dir, "pink", "from cwd")
    write_profile(home_dir, "pink", "from home")
    elsewhere = write_profile(tmp_path / "elsewhere", "pink", "from a path")
    assert load_profile("pink").description == "from cwd"
    assert load_profile(str(elsewhere)).description == "from a path"
    assert load_profile(elsewhere).description == "from a path"
    (cwd_dir / "pink.yaml").unlink()
    assert load_profile("pink").description == "from home"
    (home_dir / "pink.yaml").unlink()
    assert load_profile("pink").source_path.parent == builtin_profiles_dir().resolve()


def test_explicit_search_dirs_replace_cwd_and_home(isolated, tmp_path):
    cwd_dir, _ = isolated
    write_profile(cwd_dir, "mine", "cwd")
    write_profile(tmp_path / "team", "mine", "team")
    assert load_profile("mine", search_dirs=[tmp_path / "team"]).description == "team"


def test_asrfair_home_defaults_to_dot_asrfair(monkeypatch):
    monkeypatch.delenv("ASRFAIR_HOME", raising=False)
    assert asrfair_home() == Path("~/.asrfair").expanduser()


def test_list_profiles_marks_shadowed_and_broken(isolated):
    cwd_dir, home_dir = isolated
    write_profile(cwd_dir, "white", "my white")
    write_profile(home_dir, "kitchen", "home kitchen")
    (home_dir / "broken.yaml").write_text("name: broken\ntransforms: [{type: whit}]\n")
    infos = list_profiles()
    by_where = {(i.name, i.location): i for i in infos}
    assert by_where[("white", "./noise_profiles")].shadowed is False
    assert by_where[("white", "built-in")].shadowed is True
    assert by_where[("kitchen", "$ASRFAIR_HOME/noise_profiles")].description == "home kitchen"
    assert "is not a known transform" in by_where[("broken", "$ASRFAIR_HOME/noise_profiles")].error
    assert [i.location for i in infos].index("built-in") > [i.location for i in infos].index("./noise_profiles")


# -- bad input ---------------------------------------------------------------------------------

def test_unknown_name_lists_available_and_suggests(isolated):
    with pytest.raises(ConfigError) as info:
        load_profile("pnik")
    message = str(info.value)
    assert message.startswith('unknown noise profile "pnik". Did you mean "pink"? Available: ')
    assert "telephone" in message and "asrfair noise add" in message


def test_missing_profile_path(isolated):
    with pytest.raises(ConfigError, match=r"nope\.yaml: noise profile file not found"):
        load_profile("./nope.yaml")


def test_exact_message_for_unknown_source(isolated, tmp_path):
    path = write_profile(tmp_path, "t", "", [{"type": "additive", "source": {"type": "pnik"}}])
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert str(info.value) == (f"{path}: field 'transforms[0].source.type' (value: 'pnik'): is not a known noise source. "
                               'Use one of: white, pink, brown, recorded, babble, tone, beeps. Did you mean "pink"?')


@pytest.mark.parametrize("transforms, expected", [
    ([{"type": "telephon"}], r"field 'transforms\[0\].type' \(value: 'telephon'\): is not a known transform.*Did you mean \"telephone\""),
    ([{"type": "pink"}], r"is a noise source, not a step. Wrap it in an additive step"),
    ([{"type": "telephone", "hi_hz": 3000}], r"field 'transforms\[0\].hi_hz' \(value: 3000\): is not a parameter of this step"),
    ([{"type": "additive", "snr_db": "loud", "source": {"type": "white"}}], r"field 'transforms\[0\].snr_db' \(value: 'loud'\): must be a finite number"),
    ([{"type": "packet_loss", "loss_rate": 1.5}], r"field 'transforms\[0\].loss_rate' \(value: 1.5\): must be at most 1"),
    ([{"type": "reverb"}], r"needs exactly one of `rt60_s:`"),
    ([{"type": "additive", "source": {"type": "recorded", "files": ["/no/such/noise.wav"]}}],
     r"field 'transforms\[0\].source.files\[0\].path' \(value: '/no/such/noise.wav'\): refers to a file that does not exist"),
    ([], r"field 'transforms' \(value: \[\]\): must be a non-empty list"),
])
def test_validation_names_file_field_value(tmp_path, transforms, expected):
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "transforms": transforms}))
    with pytest.raises(ConfigError, match=expected) as info:
        load_profile(path)
    assert str(info.value).startswith(str(path))


def test_checksum_mismatch(tmp_path):
    noise = tmp_path / "noise.wav"
    soundfile.write(noise, np.full(RATE_HZ, 0.1, dtype=np.float32), RATE_HZ)
    checksum = sha256_of(noise)
    path = write_profile(tmp_path, "t", "", [{"type": "additive", "source": {"type": "recorded", "files": [{"path": "noise.wav", "sha256": checksum}]}}])
    assert load_profile(path).transforms[0].parts[0].source.files[0].path == noise  # relative to the YAML's folder
    soundfile.write(noise, np.full(RATE_HZ, 0.2, dtype=np.float32), RATE_HZ)
    with pytest.raises(ConfigError, match=r"files\[0\].path.*file checksum has changed.*asrfair noise add"):
        load_profile(path)


def test_yaml_syntax_error_names_line(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("name: t\ntransforms:\n  - type: [unclosed\n")
    with pytest.raises(ConfigError, match=r"t\.yaml:\d+: not valid YAML"):
        load_profile(path)


def test_name_must_match_file_and_clean_is_reserved(isolated):
    cwd_dir, _ = isolated
    write_profile(cwd_dir, "a", "")
    (cwd_dir / "a.yaml").write_text((cwd_dir / "a.yaml").read_text().replace("name: a", "name: b"))
    with pytest.raises(ConfigError, match="does not match the file name 'a'"):
        load_profile("a")
    with pytest.raises(ConfigError, match="reserved for the baseline"):
        load_profile(write_profile(cwd_dir, "clean", ""))


def test_snr_given_to_profile_without_snr_step_and_missing_snr(isolated):
    with pytest.raises(ConfigError, match='"telephone" has no step whose level comes from --snr'):
        apply_profile(load_profile("telephone"), UTTERANCES["utt0"], RATE_HZ, snr_db=5.0, rng=np.random.default_rng(0))
    with pytest.raises(ConfigError, match="not a number"):
        apply_profile(load_profile("white"), UTTERANCES["utt0"], RATE_HZ, snr_db="5", rng=np.random.default_rng(0))


# -- conditions --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, snr_db, key", [("pink", 10, "pink@10dB"), ("pink", 2.5, "pink@2.5dB"), ("pink", -0.0, "pink@0dB"),
                                                ("pink", -5, "pink@-5dB"), ("telephone", None, "telephone")])
def test_condition_key(name, snr_db, key):
    assert condition_key(name, snr_db) == key


def test_parse_snr_values():
    assert parse_snr_values("20, 10,5,0") == (20.0, 10.0, 5.0, 0.0)
    with pytest.raises(ConfigError, match=r"--snr: 'abc' is not a number"):
        parse_snr_values("10,abc")


def test_build_conditions_includes_clean_once_and_snr_free_profiles_once(isolated):
    from harness.runner import build_conditions

    conditions = build_conditions([load_profile("pink"), load_profile("telephone")], [10, 0])
    assert [c.key for c in conditions] == [CLEAN_CONDITION, "pink@10dB", "pink@0dB", "telephone"]
    assert conditions[1].snr_db == 10.0 and conditions[3].snr_db is None


def test_a_mix_above_full_scale_is_scaled_not_clipped(isolated):
    from harness.noise import snr_db_of
    from harness.noise.profile import FULL_SCALE_PEAK

    rate_hz = 16000
    t = np.arange(rate_hz) / rate_hz
    speech = (0.9 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    mixed, records = apply_profile(load_profile("white"), speech, rate_hz, snr_db=0.0, rng=np.random.default_rng(5))
    assert np.max(np.abs(mixed)) == pytest.approx(FULL_SCALE_PEAK, rel=1e-6)
    assert records[-1]["type"] == "headroom" and records[-1]["gain_db"] < 0
    # Scaling both parts alike keeps the SNR the run asked for.
    gain = 10 ** (records[-1]["gain_db"] / 20)
    assert snr_db_of(speech * gain, mixed) == pytest.approx(0.0, abs=0.1)
