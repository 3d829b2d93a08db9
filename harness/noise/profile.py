"""Noise profiles: named chains of transforms kept as YAML, found by name, validated, and applied.

Lookup order for a name: a path to a YAML file, ./noise_profiles/, $ASRFAIR_HOME/noise_profiles
(ASRFAIR_HOME defaults to ~/.asrfair), then the built-in set shipped in harness/builtin_profiles.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from harness.errors import ConfigError, Problem
from harness.noise._base import BabblePool, Context, as_mono_float32
from harness.noise._spec import Fields, child_seed, did_you_mean
from harness.noise.additive import SOURCE_TYPES, Additive
from harness.noise.clipping import Clip
from harness.noise.codec import Codec
from harness.noise.companding import Companding
from harness.noise.gain import Gain
from harness.noise.packet_loss import PacketLoss
from harness.noise.reverb import Reverb
from harness.noise.telephone import Telephone

STEP_TYPES: dict[str, type] = {
    "additive": Additive,
    "reverb": Reverb,
    "telephone": Telephone,
    "mu_law": Companding,
    "a_law": Companding,
    "mp3": Codec,
    "opus": Codec,
    "gain": Gain,
    "clip": Clip,
    "packet_loss": PacketLoss,
}
"""Every `type:` a profile's `transforms:` entry may name."""

CLEAN_CONDITION = "clean"
"""The baseline condition every run includes; no profile may take this name."""

PROFILE_SUFFIXES = (".yaml", ".yml")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def asrfair_home() -> Path:
    """$ASRFAIR_HOME, or ~/.asrfair when unset or empty."""
    return Path(os.environ.get("ASRFAIR_HOME") or "~/.asrfair").expanduser()


def builtin_profiles_dir() -> Path:
    return Path(str(resources.files("harness").joinpath("builtin_profiles")))


def default_search_dirs() -> list[Path]:
    """./noise_profiles then $ASRFAIR_HOME/noise_profiles (the built-in set is searched after these)."""
    return [Path.cwd() / "noise_profiles", asrfair_home() / "noise_profiles"]


def condition_key(profile_name: str, snr_db: float | None) -> str:
    """Condition name used in results and in seeding: "pink@10dB", "pink@2.5dB", "telephone" (no SNR)."""
    if snr_db is None:
        return profile_name
    return f"{profile_name}@{float(snr_db) + 0.0:g}dB"


def parse_snr_values(text: str, *, option: str = "--snr") -> tuple[float, ...]:
    """"20,10,5,0" -> (20.0, 10.0, 5.0, 0.0); ConfigError naming the bad item otherwise."""
    values = []
    for item in str(text).split(","):
        item = item.strip().removesuffix("dB").removesuffix("db").strip()
        try:
            value = float(item)
        except ValueError:
            raise ConfigError(f"{option}: {item!r} is not a number. Give SNRs in dB separated by commas, e.g. {option} 20,10,5,0.") from None
        if not math.isfinite(value) or not -60.0 <= value <= 120.0:
            raise ConfigError(f"{option}: {item!r} is outside -60..120 dB. Give SNRs in dB separated by commas, e.g. {option} 20,10,5,0.")
        values.append(value)
    return tuple(values)


@dataclass(frozen=True, kw_only=True)
class NoiseProfile:
    """A named chain of transform steps. uses_snr is True when an additive step takes its level from --snr."""

    name: str
    description: str
    transforms: tuple[Any, ...]
    source_path: Path | None = None
    uses_snr: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "uses_snr", any(getattr(s, "uses_snr_grid", False) for s in self.transforms))

    def describe(self) -> dict:
        """JSON-able description of the chain (for provenance and `asrfair noise list`)."""
        return {"name": self.name, "description": self.description, "source_path": None if self.source_path is None else str(self.source_path),
                "uses_snr": self.uses_snr, "transforms": [s.describe() for s in self.transforms]}


@dataclass(frozen=True, kw_only=True)
class ProfileInfo:
    """One profile file found by list_profiles; error is set (and description empty) when it fails to load."""

    name: str
    location: str
    path: Path
    description: str
    uses_snr: bool | None
    shadowed: bool = False
    error: str | None = None


def profile_from_mapping(mapping: object, *, file: str, base_dir: Path | None = None, expected_name: str | None = None,
                         source_path: Path | None = None) -> NoiseProfile:
    """Validate a parsed YAML document into a NoiseProfile; ConfigError names the file, field and value."""
    top = Fields(mapping, file=file, field="", base_dir=base_dir)
    fallback_name = expected_name or (source_path.stem if source_path else None)
    if top.has("name") or fallback_name is None:
        name = top.string("name")
    else:
        name = fallback_name
    check_name(name, file=file)
    if expected_name is not None and name != expected_name:
        top.fail("name", name, f"does not match the file name {expected_name!r}", f"Rename the file to {name}.yaml or set `name: {expected_name}`")
    description = top.raw("description", None)
    if description is None:
        description = ""
    elif not isinstance(description, str):
        top.fail("description", description, "must be text", "Quote it: `description: \"...\"`")
    entries = top.raw("transforms")
    if not isinstance(entries, list) or not entries:
        top.fail("transforms", entries, "must be a non-empty list of steps", "List steps as `- type: additive` ... (see noise_profiles/README.md)")
    top.finish()
    steps = []
    for index, entry in enumerate(entries):
        sub = Fields(entry, file=file, field=f"transforms[{index}]", base_dir=base_dir)
        step_type = sub.string("type")
        if step_type not in STEP_TYPES:
            if step_type in SOURCE_TYPES:
                sub.fail(sub.path_of("type"), step_type, "is a noise source, not a step",
                         f"Wrap it in an additive step: `- type: additive` with `source: {{type: {step_type}}}`")
            sub.fail(sub.path_of("type"), step_type, "is not a known transform",
                     f"Use one of: {', '.join(STEP_TYPES)}.{did_you_mean(step_type, tuple(STEP_TYPES))}")
        steps.append(STEP_TYPES[step_type].from_spec(sub, type=step_type))
    return NoiseProfile(name=name, description=description, transforms=tuple(steps), source_path=source_path)


def check_name(name: str, *, file: str = "profile name") -> None:
    if not isinstance(name, str) or not _NAME.match(name) or name == CLEAN_CONDITION:
        reason = f'"{CLEAN_CONDITION}" is reserved for the baseline' if name == CLEAN_CONDITION else "use letters, digits, '-', '_', '.', '+' only, starting with a letter or digit"
        raise ConfigError(str(Problem(file=file, line=None, field="name", value=name, message="is not a usable profile name",
                                      fix=f"Choose another name ({reason})")))


def read_profile_file(path: Path, *, expected_name: str | None = None) -> NoiseProfile:
    """Load and validate one profile YAML file (relative paths inside it resolve against its folder)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read noise profile ({exc.strerror}). Check the path and permissions.") from exc
    try:
        mapping = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)}). Fix the syntax (see noise_profiles/README.md for examples).") from exc
    return profile_from_mapping(mapping, file=str(path), base_dir=path.parent.resolve(), expected_name=expected_name,
                                source_path=path.resolve())


def _search_order(search_dirs: Sequence[Path | str] | None) -> list[tuple[str, Path]]:
    if search_dirs is None:
        dirs = [("./noise_profiles", default_search_dirs()[0]), ("$ASRFAIR_HOME/noise_profiles", default_search_dirs()[1])]
    else:
        dirs = [(str(d), Path(d).expanduser()) for d in search_dirs]
    return dirs + [("built-in", builtin_profiles_dir())]


def load_profile(name_or_path: str | Path, *, search_dirs: Sequence[Path | str] | None = None) -> NoiseProfile:
    """Find a profile by path or name and validate it (files exist, checksums match, parameters in range).

    search_dirs replaces ./noise_profiles and $ASRFAIR_HOME/noise_profiles; the built-in set is
    always searched last. An unknown name is a ConfigError listing what is available.
    """
    text = str(name_or_path).strip()
    candidate = Path(text).expanduser()
    looks_like_path = isinstance(name_or_path, Path) or "/" in text or os.sep in text or text.endswith(PROFILE_SUFFIXES)
    if candidate.is_file():
        return read_profile_file(candidate)
    if looks_like_path:
        raise ConfigError(f"{text}: noise profile file not found. Check the path, or give a profile name (see `asrfair noise list`).")
    if not text or not _NAME.match(text):
        raise ConfigError(f"--profile: {text!r} is neither a profile file nor a valid profile name. Give a name from `asrfair noise list` or a path to a YAML file.")
    for _, directory in _search_order(search_dirs):
        for suffix in PROFILE_SUFFIXES:
            path = directory / f"{text}{suffix}"
            if path.is_file():
                return read_profile_file(path, expected_name=text)
    available = sorted({info.name for info in list_profiles(search_dirs=search_dirs)})
    raise ConfigError(f'unknown noise profile "{text}".{did_you_mean(text, available)} Available: {", ".join(available) or "(none)"}. '
                      "Add your own recordings with `asrfair noise add PATH... --name NAME`, or give a path to a profile YAML file.")


def list_profiles(*, search_dirs: Sequence[Path | str] | None = None) -> list[ProfileInfo]:
    """Every profile file in lookup order; a name found earlier shadows the same name found later.

    A file that fails to load is listed with its error rather than stopping the listing.
    """
    seen: set[str] = set()
    infos = []
    for location, directory in _search_order(search_dirs):
        if not directory.is_dir():
            continue
        for path in sorted(p for p in directory.iterdir() if p.suffix in PROFILE_SUFFIXES and p.is_file()):
            name = path.stem
            try:
                profile = read_profile_file(path, expected_name=name)
                info = ProfileInfo(name=name, location=location, path=path, description=profile.description, uses_snr=profile.uses_snr, shadowed=name in seen)
            except ConfigError as exc:
                info = ProfileInfo(name=name, location=location, path=path, description="", uses_snr=None, shadowed=name in seen, error=str(exc))
            seen.add(name)
            infos.append(info)
    return infos


def prepare(profile: NoiseProfile, rate_hz: int) -> NoiseProfile:
    """Decode and resample every recording and impulse response the profile uses, once, now.

    Later apply_profile calls reuse the decoded audio (kept in memory for the process), and a
    corrupt or unreadable file fails here, before any audio is transcribed. Returns the profile.
    """
    for step in profile.transforms:
        if hasattr(step, "prepare"):
            step.prepare(int(rate_hz))
    return profile


# Peak a mix is scaled to when it would otherwise exceed full scale (and clip on conversion to PCM).
FULL_SCALE_PEAK = 0.99


def apply_profile(profile: NoiseProfile, samples: np.ndarray, rate_hz: int, *, snr_db: float | None, rng: np.random.Generator,
                  babble_pool: BabblePool | None = None) -> tuple[np.ndarray, list[dict]]:
    """Run the chain on mono audio; returns (float32 audio of the same length, one JSON-able record per step).

    rng must be the generator for this (run seed, utterance id, condition_key(profile.name, snr_db));
    each step draws from its own child generator (its seed is in its record), so adding a step
    does not change what earlier steps drew. snr_db is required exactly when profile.uses_snr.

    A result that peaks above full scale is scaled down as a whole to a peak of FULL_SCALE_PEAK, so the
    recogniser hears the intended SNR (both parts scale alike) rather than a clipped mix; the gain is
    recorded as a final "headroom" record. Clipping on purpose is the `clipping` step's job.
    """
    x = as_mono_float32(samples, what=f"noise profile {profile.name!r} input")
    if profile.uses_snr and snr_db is None:
        raise ConfigError(f'noise profile "{profile.name}" sets its noise level from --snr, but no SNR was given. Pass --snr, e.g. --snr 20,10,5,0.')
    if not profile.uses_snr and snr_db is not None:
        raise ConfigError(f'noise profile "{profile.name}" has no step whose level comes from --snr, but snr_db={snr_db!r} was given. '
                          "Run it once without an SNR (harness.runner.build_conditions does this).")
    if snr_db is not None:
        if isinstance(snr_db, bool) or not isinstance(snr_db, (int, float, np.floating, np.integer)) or not math.isfinite(float(snr_db)):
            raise ConfigError(f"--snr: {snr_db!r} is not a number. Give SNRs in dB, e.g. --snr 20,10,5,0.")
        snr_db = float(snr_db)
    context = Context(rate_hz=int(rate_hz), snr_db=snr_db, babble_pool=babble_pool)
    records = []
    for index, step in enumerate(profile.transforms):
        seed = child_seed(rng)
        drawn = step.draw(np.random.default_rng(seed), n_samples=x.size, context=context)
        out, record = step.apply(x, drawn, context=context)
        if out.shape != x.shape:
            raise RuntimeError(f"step {index} ({step.type}) of profile {profile.name!r} changed the length from {x.size} to {out.size}")
        x = out.astype(np.float32, copy=False)
        records.append({"step": index, **record, "step_seed": seed})
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak > 1.0:
        gain = FULL_SCALE_PEAK / peak
        x = (x * gain).astype(np.float32, copy=False)
        records.append({"step": "headroom", "type": "headroom", "peak_before": peak, "gain_db": 20 * math.log10(gain)})
    return x, records
