"""Noise and channel conditions: transforms (one per module), profiles as YAML data, and recordings."""

from harness.noise._base import BabblePool, Context
from harness.noise.additive import mix_at_snr, snr_db_of
from harness.noise.preview import PREVIEW_DIR, preview, preview_path
from harness.noise.profile import (
    CLEAN_CONDITION,
    STEP_TYPES,
    NoiseProfile,
    ProfileInfo,
    apply_profile,
    asrfair_home,
    condition_key,
    default_search_dirs,
    list_profiles,
    load_profile,
    parse_snr_values,
    prepare,
    read_profile_file,
)
from harness.noise.recorded import MIN_DURATION_S, SILENCE_DBFS
from harness.noise.recordings import add_recordings, default_profiles_dir

__all__ = [
    "CLEAN_CONDITION",
    "MIN_DURATION_S",
    "SILENCE_DBFS",
    "STEP_TYPES",
    "BabblePool",
    "Context",
    "NoiseProfile",
    "ProfileInfo",
    "add_recordings",
    "apply_profile",
    "asrfair_home",
    "condition_key",
    "default_profiles_dir",
    "default_search_dirs",
    "list_profiles",
    "load_profile",
    "mix_at_snr",
    "parse_snr_values",
    "prepare",
    "preview",
    "preview_path",
    "PREVIEW_DIR",
    "read_profile_file",
    "snr_db_of",
]
