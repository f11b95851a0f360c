"""Typed run configuration: one place for every knob, its default and its validation.

A config is YAML with the sections below; any key can be overridden with ``--set section.key=value``. The resolved
config (defaults filled in) is written into each run folder, so a run can be repeated from its folder alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator

from revcurse.backends import BACKENDS
from revcurse.errors import InputError, read_user_text
from revcurse.experiments import EXPERIMENTS, get_experiment
from revcurse.sections import (
    CorpusConfig,
    CureConfig,
    LoraSection,
    ModelConfig,
    ProbeConfig,
    Section,
    TrainConfig,
    WorldConfig,
)
from revcurse.user_yaml import load_user_yaml

__all__ = [  # the sections are defined in revcurse.sections and named here too: one import for a config's parts
    "CorpusConfig", "CureConfig", "LoraSection", "ModelConfig", "ProbeConfig", "RunConfig", "Section",
    "SharedConfig", "TrainConfig", "WorldConfig", "dump_config", "load_config", "load_yaml_config",
]

M = TypeVar("M", bound=BaseModel)


class SharedConfig(Section):
    """The sections every experiment shares; ``RunConfig`` adds one section per registered experiment."""

    experiment: str = Field("celebrities", description="which registered experiment to run (revcurse.experiments)")
    seed: int = Field(0, description="first seed; seed i of --seeds N is seed + i")
    seeds: int = Field(1, ge=1, description="how many seeds to run and aggregate")
    world: WorldConfig = WorldConfig()
    corpus: CorpusConfig = CorpusConfig()
    model: ModelConfig = ModelConfig()
    lora: LoraSection = LoraSection()
    train: TrainConfig = TrainConfig()
    probe: ProbeConfig = ProbeConfig()
    cures: list[str] = Field(default_factory=list, description="corpus cures applied in order (see revcurse.cures)")
    cure: CureConfig = CureConfig()

    @field_validator("experiment")
    @classmethod
    def _known_experiment(cls, name: str) -> str:
        get_experiment(name)  # a ValueError naming the known experiments
        return name

    @field_validator("probe")
    @classmethod
    def _known_backend(cls, probe: ProbeConfig) -> ProbeConfig:
        if probe.backend not in BACKENDS:
            raise ValueError(f"unknown backend {probe.backend!r}; known: {', '.join(BACKENDS)}")
        return probe

    @field_validator("cures")
    @classmethod
    def _known_cures(cls, names: list[str]) -> list[str]:
        from revcurse.cures import CURES

        unknown = [name for name in names if name not in CURES]
        if unknown:
            raise ValueError(f"unknown cure(s) {unknown}; known: {', '.join(CURES)}")
        return names


def build_run_config() -> type[SharedConfig]:
    """The config root of the registry as it is now (a test that registers an experiment builds it again)."""
    return create_model(
        "RunConfig",
        __base__=SharedConfig,
        __doc__="A whole run: the shared sections and every experiment's options (``experiments.EXPERIMENTS``).",
        **{e.section: (e.options, e.options()) for e in EXPERIMENTS.values() if e.options is not None},
    )


# The one config root: the shared sections plus each registered experiment's options under its section name, so
# an experiment's defaults live in its own module and adding one never touches this file.
RunConfig = build_run_config()


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> RunConfig:
    """Read a YAML config (or the defaults), apply ``key=value`` overrides, validate once.

    The experiment's own ``defaults`` (e.g. ``train.epochs=20``) lie under the file and the overrides: a value
    the user gives always wins.
    """
    return load_yaml_config(RunConfig, path, overrides)


def experiment_defaults(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` laid over the defaults of the experiment it names (the default experiment when it names none)."""
    name = data.get("experiment", SharedConfig.model_fields["experiment"].default)
    if not isinstance(name, str) or name not in EXPERIMENTS:
        return data  # validation names the known experiments
    base: dict[str, Any] = {}
    for override in EXPERIMENTS[name].defaults:
        apply_override(base, override)
    return _merged(base, data)


def _merged(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        both_sections = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merged(merged[key], value) if both_sections else value
    return merged


def load_yaml_config(model: type[M], path: str | Path | None = None, overrides: Iterable[str] = ()) -> M:
    """Any config model from YAML plus overrides; a bad file or value is an InputError naming the file."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        loaded = load_user_yaml(read_user_text(path, "config file"), path)
        if loaded is not None and not isinstance(loaded, dict):
            sections = ", ".join(model.model_fields)
            raise InputError(f"expected a mapping of sections ({sections})", path)
        data = loaded or {}
    for override in overrides:
        apply_override(data, override)
    refuse_secrets(data, path)
    if issubclass(model, SharedConfig):
        data = experiment_defaults(data)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise InputError(f"invalid config: {problems}", path) from None


# Key names that hold credentials. A name ending in _env (``api_key_env``) names an environment variable: allowed.
SECRET_KEY = re.compile(r"api[_-]?key|secret|passw|credential|bearer|authorization|(^|[_-])(token|key)$", re.I)


def refuse_secrets(data: Any, path: str | Path | None = None, prefix: str = "") -> None:
    """Refuse a config key that looks like a credential, whatever the section, before validation.

    The resolved config is written into every run folder (config.yaml), so a key put there would leak. The
    message names the key, never its value. Keys come from environment variables (``--api-key-env NAME``).
    """
    if not isinstance(data, dict):
        return
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(key, str) and SECRET_KEY.search(key) and not key.lower().endswith("_env"):
            raise InputError(
                f"config key {dotted!r} looks like a credential: API keys and tokens never go in a config (it is "
                "copied into every run folder); put the key in an environment variable and pass its name "
                "(e.g. --api-key-env MY_KEY_VAR)",
                path,
            )
        refuse_secrets(value, path, f"{dotted}.")


def apply_override(data: dict[str, Any], override: str) -> None:
    """Set ``a.b=value`` in a nested dict; the value is parsed as YAML (numbers, booleans, null, lists)."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--set expects key=value, got {override!r}")
    parts = [part.strip() for part in key.split(".")]
    if not all(parts):
        raise InputError(f"--set {key}: expected a key like section.name, with no empty part between dots")
    value = load_user_yaml(raw, f"--set {key}", lines=False)
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise InputError(f"--set {key}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML, with the options of its own experiment only (the others are defaults)."""
    others = {e.section for e in EXPERIMENTS.values() if e.name != config.experiment}
    return yaml.safe_dump(config.model_dump(mode="json", exclude=others), sort_keys=False)
