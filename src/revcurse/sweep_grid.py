"""A sweep's grid: ``--grid`` options parsed into dimensions, and the cells (one config each) they span.

Parsing and validation only, so a bad grid is refused before any folder is written or model trained. See
``revcurse.sweep`` for the grammar of ``--grid`` and the folder layout.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from revcurse.config import RunConfig, load_config
from revcurse.errors import InputError

SIZE_KEY = "size"
CURES_KEY = "cures"
PARAMETERS = "parameters"
# Model presets for ``--grid size=...``: (hidden, intermediate, layers, heads). "m" is the embedded default.
SIZES: dict[str, tuple[int, int, int, int]] = {
    "xxs": (16, 64, 1, 2),
    "xs": (32, 128, 2, 2),
    "s": (64, 256, 2, 4),
    "m": (96, 384, 2, 4),
    "l": (160, 640, 2, 4),
    "xl": (256, 1024, 4, 8),
}
SIZE_FIELDS = ("model.hidden_size", "model.intermediate_size", "model.layers", "model.heads")
MODEL_SIZE_KEYS = {SIZE_KEY, *SIZE_FIELDS}
CELLS = "cells"


@dataclass(frozen=True)
class Dimension:
    """One ``--grid`` option: the keys that move together and, per step, one raw value per key."""

    keys: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]

    @property
    def spec(self) -> str:
        return ",".join(self.keys) + "=" + ",".join(":".join(step) for step in self.values)


@dataclass(frozen=True)
class Cell:
    """One point of the grid: its raw values per key, its folder name and its config."""

    index: int
    values: dict[str, str]
    slug: str
    config: RunConfig


def parse_grid(spec: str) -> Dimension:
    """``KEY=V1,V2`` or ``K1,K2=A1:A2,B1:B2`` -> a Dimension; bad input is an InputError saying what is expected."""
    keys_text, sep, values_text = spec.partition("=")
    example = "e.g. --grid model.hidden_size=32,64 or --grid model.hidden_size,model.intermediate_size=32:128,64:256"
    if not sep:
        raise InputError(f"--grid {spec!r}: expected KEY=V1,V2,... ({example})")
    keys = tuple(key.strip() for key in keys_text.split(","))
    if not all(keys) or not keys_text.strip():
        raise InputError(f"--grid {spec!r}: empty key before '=' ({example})")
    if len(set(keys)) != len(keys):
        raise InputError(f"--grid {spec!r}: a key is named twice")
    for key in keys:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
            raise InputError(f"--grid {spec!r}: {key!r} is not a config key like model.hidden_size")
    if (SIZE_KEY in keys or CURES_KEY in keys) and len(keys) > 1:
        raise InputError(f"--grid {spec!r}: '{SIZE_KEY}' and '{CURES_KEY}' take a dimension of their own")
    steps = [step.strip() for step in values_text.split(",")]
    if not values_text.strip() or not all(steps):
        raise InputError(f"--grid {spec!r}: expected one or more comma-separated values after '=' ({example})")
    values = []
    for step in steps:
        parts = tuple(part.strip() for part in step.split(":")) if len(keys) > 1 else (step,)
        if len(parts) != len(keys) or not all(parts):
            raise InputError(
                f"--grid {spec!r}: value {step!r} needs {len(keys)} colon-separated parts, one per key "
                f"({', '.join(keys)})"
            )
        values.append(parts)
    if len(set(values)) != len(values):
        raise InputError(f"--grid {spec!r}: a value is listed twice")
    if SIZE_KEY in keys:
        unknown = [v[0] for v in values if v[0] not in SIZES]
        if unknown:
            raise InputError(f"--grid {spec!r}: unknown size(s) {unknown}; presets: {', '.join(SIZES)}")
    if CURES_KEY in keys:
        from revcurse.compare import check_arm

        for value in values:
            check_arm(value[0], f"--grid {spec!r}")  # raises on an unknown cure or an empty name beside '+'
    return Dimension(keys, tuple(values))


def check_dimensions(dimensions: list[Dimension]) -> None:
    """A key may be swept by one dimension only."""
    seen: dict[str, str] = {}
    for dimension in dimensions:
        for key in dimension.keys:
            if key in seen:
                raise InputError(f"--grid: {key!r} is swept twice ({seen[key]!r} and {dimension.spec!r})")
            seen[key] = dimension.spec
    if not dimensions:
        raise InputError("sweep needs at least one --grid KEY=V1,V2,...")
    if SIZE_KEY in seen:
        clash = sorted(set(seen) & set(SIZE_FIELDS))
        if clash:
            raise InputError(f"--grid: '{SIZE_KEY}' sets {', '.join(SIZE_FIELDS)}; do not sweep {clash} beside it")


def cell_slug(values: dict[str, str]) -> str:
    """A readable folder name: ``hidden_size-64__epochs-5`` (the last part of each key; the full key if two clash)."""
    short = {key: key.rsplit(".", 1)[-1] for key in values}
    clashing = {name for name in short.values() if list(short.values()).count(name) > 1}
    parts = []
    for key, raw in values.items():
        name = key if short[key] in clashing else short[key]
        value = re.sub(r"[^A-Za-z0-9.+-]+", "-", raw).strip("-.") or "empty"
        parts.append(f"{name}-{value}")
    return "__".join(parts)


def cell_overrides(values: dict[str, str]) -> list[str]:
    """The ``key=value`` overrides of a cell (size presets expanded; cures are applied after loading)."""
    overrides = []
    for key, raw in values.items():
        if key == SIZE_KEY:
            overrides += [f"{field}={value}" for field, value in zip(SIZE_FIELDS, SIZES[raw])]
        elif key != CURES_KEY:
            overrides.append(f"{key}={raw}")
    return overrides


def build_cells(config_path: Path | None, overrides: list[str], dimensions: list[Dimension]) -> list[Cell]:
    """Every cell's config, validated now (before any training), in grid order."""
    from revcurse.compare import arm_config
    from revcurse.model import check_checkpoint

    check_dimensions(dimensions)
    cells = []
    for index, steps in enumerate(itertools.product(*(d.values for d in dimensions))):
        values = {key: raw for d, step in zip(dimensions, steps) for key, raw in zip(d.keys, step)}
        try:
            config = load_config(config_path, [*overrides, *cell_overrides(values)])
            check_checkpoint(config.model)  # a missing or refused checkpoint stops the sweep before any cell runs
        except InputError as error:
            raise InputError(f"grid cell {values}: {error}") from None
        if CURES_KEY in values:
            config = arm_config(config, values[CURES_KEY])
        cells.append(Cell(index, values, cell_slug(values), config))
    slugs = [cell.slug for cell in cells]
    duplicates = sorted({slug for slug in slugs if slugs.count(slug) > 1})
    if duplicates:
        raise InputError(f"--grid: different values give the same cell folder name(s) {duplicates}")
    return cells


def sweep_identity(dimensions: list[Dimension], base: RunConfig) -> dict:
    """What must match for a rerun to continue a sweep: the grid and the resolved base config."""
    return {
        "grid": [{"keys": list(d.keys), "values": [list(step) for step in d.values]} for d in dimensions],
        "base_config": base.model_dump(mode="json"),
    }


def resolve_plot_x(plot_x: str | None, dimensions: list[Dimension]) -> str:
    """The plot's x key: asked, else the first grid key; a model-size key plots against parameters."""
    keys = [key for d in dimensions for key in d.keys]
    if plot_x is None:
        plot_x = keys[0] if keys else PARAMETERS
        return PARAMETERS if plot_x in MODEL_SIZE_KEYS else plot_x
    if plot_x != PARAMETERS and plot_x not in keys:
        raise InputError(f"--plot-x must be a grid key ({', '.join(keys)}) or '{PARAMETERS}'; got {plot_x!r}")
    return plot_x


def grid_value(raw: str) -> object:
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    return value if isinstance(value, (int, float, str, bool)) or value is None else raw
