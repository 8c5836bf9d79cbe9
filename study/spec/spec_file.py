"""Study files: ``search_spaces/NAME.yaml`` (or a path) -> a validated ``StudySpec``.

``load_spec`` reads the file with bounded size and alias expansion (``study.core.yaml_file``),
validates its fields (``study.spec.study_spec``), refuses a grid above ``--max-grid`` before any cell is
built, validates every grid cell and the ends of every sampled range as ``TrialConfig`` under
every budget, and checks every name the file uses (``study.spec.validate``). Every error is one
line naming the file, the field and the value.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from pydantic import ValidationError

from study.core.errors import SpecError, field_path
from study.core.yaml_file import read_yaml
from study.spec.config import TrialConfig
from study.spec.factors import SHORTHANDS
from study.spec.limits import Limits, check_counts, check_widths
from study.spec.study_spec import BUDGETS, StudySpec
from study.store.folder import NAME_PATTERN

SEARCH_SPACES = Path(__file__).resolve().parents[2] / "search_spaces"


def _format(err: ValidationError, where: str) -> SpecError:
    first = err.errors()[0]
    field = field_path(first["loc"]) or "(top level)"
    return SpecError(f"{where}: field {field!r} = {first.get('input')!r}: {first['msg']}")


def available() -> list[str]:
    return sorted(p.stem for p in SEARCH_SPACES.glob("*.yaml"))


def spec_path(name_or_path: str) -> Path:
    """The study file of a study name (``search_spaces/NAME.yaml``) or a path to a YAML file;
    names are checked to be safe slugs before any path is built from them."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        if not NAME_PATTERN.fullmatch(path.stem):
            raise SpecError(f"{path}: the file name is the study's name, and {path.stem!r} is "
                            "not allowed: use letters, digits, '_' and '-'")
        return path
    if not NAME_PATTERN.fullmatch(name_or_path):
        raise SpecError(f"unknown study {name_or_path!r}: a study is a name made of letters, "
                        "digits, '_' and '-' (a file in search_spaces/) or a path to a .yaml file")
    path = SEARCH_SPACES / f"{name_or_path}.yaml"
    if not path.exists():
        from study.spec.validate import suggest

        known = ", ".join(available()) or "none"
        raise SpecError(f"unknown study {name_or_path!r}: no {path}{suggest(name_or_path, available())}"
                        f"; known studies: {known}")
    return path


def load_spec(name_or_path: str, limits: Limits = Limits()) -> StudySpec:
    """Load and fully validate a study: the file, every grid cell and the sampled ranges'
    ends as TrialConfigs, under every budget. Errors name the file, the field and the value.
    A grid, trials or seeds above ``limits`` are refused before any cell is built; widths
    above them as each cell is checked."""
    path = spec_path(name_or_path)
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: a study file must be a mapping of fields, got {type(raw).__name__}")
    try:
        spec = StudySpec(**raw)
    except ValidationError as err:
        raise _format(err, str(path)) from None
    spec._source = path
    if spec.name != path.stem:
        raise SpecError(f"{path}: field 'name' = {spec.name!r} must equal the file name {path.stem!r}")
    cells = spec.grid_size()
    if cells > limits.grid:
        sizes = " x ".join(str(len(f.values)) for f in spec.grid_factors.values())
        raise SpecError(f"{path}: field 'factors': the grid has {cells:,} configurations "
                        f"({sizes}), above the limit of {limits.grid:,}; raise it with "
                        f"--max-grid {cells} if you mean it")
    check_counts(spec, limits)
    for name in spec.factors:
        if name not in TrialConfig.model_fields and name not in SHORTHANDS and \
                spec.factors[name].levels is None:
            raise SpecError(f"{path}: field 'factors.{name}': unknown setting {name!r}; "
                            f"a factor must be a TrialConfig field, a shorthand "
                            f"({', '.join(sorted(SHORTHANDS))}) or define levels")
    from study.spec.validate import check_no_override, validate_study

    check_no_override(spec)  # before any configuration is built from the clashing fields
    for budget in BUDGETS:
        for cell in spec.grid_cells():
            for corner in itertools.product(*(f.corners() for f in spec.sampled_factors.values())):
                factors = cell | dict(zip(spec.sampled_factors, corner))
                where = f"{path} (budget {budget}, factors {factors})"
                check_widths(spec.trial_config(factors, budget, where), limits, where)
    validate_study(spec)
    return spec

