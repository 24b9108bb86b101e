"""Study files: load, validate (with precise error paths), expand into trials.

A study is one YAML file (see studies/quickstart.yaml). `load_study` returns a `Study` or
raises `StudyError` naming the file, the key path and the fix; `expand` turns it into the
cartesian product of its grid as `Trial`s, each with a stable `trial_id`: the hash of its
canonical resolved config (model shape, data, training budget, profiling), so renaming the
study or moving files never changes an id, while changing anything that changes the result does.

One module per job: model (Study, Trial), identity (what a trial id hashes), reading (the YAML
file), sections (name, profile, resources, tracking, smoke), train_keys (the train section, early
stopping, step arithmetic), simclr (its keys), eval_section, grid (axes, zip, overrides),
overrides (the command line's), expand, smoke, study (load_study, check_run_memory), limits (caps on
what a study may ask of the machine), jsonschema, checks (`Where`).

Loading and expanding a study imports no torch (the dataset registry's describe path and the zoo's
tables are torch-free); only the memory cap of trials about to run counts models with it
(`check_run_memory`, called by the runner).
"""

from __future__ import annotations

from harness.errors import StudyError
from harness.spec.eval_section import DATASET_EXTRA_KEYS, EVAL_KEYS, FEW_SHOT_DRAWS, check_section, check_shots
from harness.spec.expand import expand, varying_train_keys
from harness.spec.grid import AXIS_ORDER, GRID_KEYS, MAX_IMAGE_SIZE, MAX_SEED
from harness.spec.identity import UNHASHED_DEFAULTS, config_hash
from harness.spec.model import PROFILE_DEFAULTS, RESOURCE_DEFAULTS, Study, Trial
from harness.spec.reading import read_study_mapping, read_yaml
from harness.spec.sections import NAME_MAX, SMOKE_KEYS, TOP_KEYS, TRACKING_KEYS
from harness.spec.simclr import OBJECTIVES, SIMCLR_DEFAULTS, require_probes, views_per_sample
from harness.spec.smoke import SMOKE_DATA_DIVISOR, SMOKE_STEPS, SMOKE_VAL_SIZE, smoke, smoke_sizes
from harness.spec.study import check_run_memory, load_expanded, load_study, parse_study
from harness.spec.train_keys import BUDGET_KEYS, CHOICES, EARLY_STOP_KEYS, TRAIN_DEFAULTS, decay_start, min_steps, total_steps

__all__ = [
    "AXIS_ORDER",
    "BUDGET_KEYS",
    "CHOICES",
    "DATASET_EXTRA_KEYS",
    "EARLY_STOP_KEYS",
    "EVAL_KEYS",
    "FEW_SHOT_DRAWS",
    "GRID_KEYS",
    "MAX_IMAGE_SIZE",
    "MAX_SEED",
    "NAME_MAX",
    "OBJECTIVES",
    "PROFILE_DEFAULTS",
    "RESOURCE_DEFAULTS",
    "SIMCLR_DEFAULTS",
    "SMOKE_DATA_DIVISOR",
    "SMOKE_KEYS",
    "SMOKE_STEPS",
    "SMOKE_VAL_SIZE",
    "TOP_KEYS",
    "TRACKING_KEYS",
    "TRAIN_DEFAULTS",
    "UNHASHED_DEFAULTS",
    "StudyError",
    "Study",
    "Trial",
    "check_run_memory",
    "check_section",
    "check_shots",
    "config_hash",
    "decay_start",
    "expand",
    "load_expanded",
    "load_study",
    "min_steps",
    "parse_study",
    "read_study_mapping",
    "read_yaml",
    "require_probes",
    "smoke",
    "smoke_sizes",
    "total_steps",
    "varying_train_keys",
    "views_per_sample",
]
