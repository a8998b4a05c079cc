"""A run's parameters, checked before any notebook runs: ``-p`` overrides, profiles, the device."""
from __future__ import annotations

import ast
from pathlib import Path

import yaml

from ..config import profile_names, profile_parameters, profile_smoke, resolve_device
from ..layout import REPO_ROOT, notebook_parameters

# Parameters the runner passes itself; every notebook's parameters cell has them.
RUNNER_PARAMETERS = ("profile", "device")


def parse_overrides(items: list[str] | None) -> dict:
    """``["epochs=3", "lr=1e-3"]`` -> ``{"epochs": 3, "lr": 0.001}`` (YAML-typed values)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value (e.g. -p epochs=3)")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key.isidentifier():
            raise ValueError(f"override {item!r}: {key!r} is not a parameter name")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ValueError(
                f"override {item!r}: the value {value!r} cannot be read ({problem}); write numbers as 3 or "
                f"1e-3, lists as [1, 2], mappings as {{a: 1}}, and quote text that has ':', '#' or brackets"
            ) from None
        if isinstance(parsed, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        out[key] = parsed
    return out

_KIND_NAMES = {"None": "null", "bool": "a bool (true/false)", "int": "an integer", "float": "a number",
               "str": "text", "list": "a list", "dict": "a mapping"}
_VALUE_NAMES = {**_KIND_NAMES, "float": "a decimal number"}


def _kind(value) -> str:
    for types, kind in ((bool, "bool"), (int, "int"), (float, "float"), (str, "str"), ((list, tuple), "list"),
                        (dict, "dict"), (type(None), "None")):
        if isinstance(value, types):
            return kind
    return type(value).__name__


def _check_seed(where: str, key: str, value, fix: str) -> None:
    values = value if key == "seeds" and isinstance(value, (list, tuple)) else [value]
    for v in values:
        if _kind(v) != "int" or not 0 <= v < 2 ** 32:
            raise ValueError(f"{where}: parameter {key!r} must be a non-negative integer below 2**32 (seeds seed "
                             f"NumPy and PyTorch), not {value!r}; {fix}")


def check_parameter(name: str, key: str, value, default_src: str | None, *, nullable: bool = False,
                    origin: str = "override") -> None:
    """Refuse ``value`` for parameter ``key`` of notebook ``name`` when its type differs from the
    default's in the parameters cell (int / float / bool / str / list / dict; an int is fine where
    the default is a float; a ``None`` default takes any of these). ``None`` is accepted only where
    ``nullable`` (the default is ``None`` or a profile sets ``None``). Seeds must be >= 0."""
    fix = (f"pass e.g. -p {key}={default_src}" if origin == "override"
           else "fix cellbook/profiles.yaml")
    where = f"notebook {name}" + ("" if origin == "override" else f" ({origin})")
    if key in ("seed", "seeds"):
        _check_seed(where, key, value, fix if default_src not in (None, "None") else "pass e.g. -p seed=0")
    try:
        default = ast.literal_eval(default_src) if default_src is not None else None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return  # the default is an expression: nothing to compare with
    dk, vk = _kind(default), _kind(value)
    if dk == "None":
        ok = vk in _KIND_NAMES
        expected = "a number, text, a bool, a list, a mapping or null"
    else:
        ok = vk == dk or (dk == "float" and vk == "int") or (vk == "None" and nullable)
        expected = _KIND_NAMES.get(dk, dk)
    if not ok:
        if vk == "None":
            expected += " (null only where the default or a profile uses it)"
        raise ValueError(f"{where}: parameter {key!r} takes {expected} (its default is {default_src}), "
                         f"not {value!r} ({_VALUE_NAMES.get(vk, vk)}); {fix}")


def plan(name: str, profile: str, device: str, overrides: dict, root: Path = REPO_ROOT) -> dict:
    """The parameters ``name`` will run with; unknown parameter names and values of the wrong
    type (compared with the parameters cell's defaults) are an error."""
    defaults = notebook_parameters(name, root)
    params = {k: v for k, v in profile_parameters(profile, name).items()}
    params.update({"profile": profile, "device": device})
    missing_runner = [p for p in RUNNER_PARAMETERS if p not in defaults]
    if missing_runner:
        raise ValueError(f"{name}: the parameters cell must define {', '.join(missing_runner)}")
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(
            f"{name}: profile {profile!r} sets unknown parameter(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(defaults))}"
        )
    unknown = sorted(set(overrides) - set(defaults))
    if unknown and overrides:
        raise ValueError(
            f"{name}: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(defaults))}"
        )
    # Where a profile sets a parameter to null, null is a meaningful value for it (e.g. "all genes").
    nullable = {k for p in profile_names() for k, v in profile_parameters(p, name).items() if v is None}
    for key, value in params.items():
        if key not in RUNNER_PARAMETERS:
            check_parameter(name, key, value, defaults[key], nullable=True, origin=f"profile {profile!r}")
    for key, value in overrides.items():
        check_parameter(name, key, value, defaults[key], nullable=key in nullable)
    params.update(overrides)
    return params


def resolve_run_device(device: str) -> tuple[str, str | None]:
    """``(resolved device, GPU name or None)``; ``cuda`` without a GPU is a ``ValueError``."""
    if str(device).lower() == "cpu":
        return "cpu", None  # no torch import needed
    try:
        resolved = resolve_device(device)
    except ValueError as err:
        raise ValueError(f"--device {device}: {err}") from None
    gpu = None
    if resolved.startswith("cuda"):
        import torch

        index = int(resolved.split(":", 1)[1]) if ":" in resolved else 0
        gpu = torch.cuda.get_device_name(index)
    return resolved, gpu


def own_overrides(name: str, overrides: dict, root=REPO_ROOT) -> dict:
    """The overrides that notebook ``name`` has a parameter for."""
    params = notebook_parameters(name, root)
    return {k: v for k, v in overrides.items() if k in params}


def smoke_overrides(profile: str, names: list[str], root=REPO_ROOT) -> dict:
    """``--smoke``: the profile's cut loop sizes, for the parameters that some notebook of ``names`` has
    (applied like ``-p``; an explicit ``-p`` wins)."""
    have = set().union(*(notebook_parameters(n, root) for n in names)) if names else set()
    return {k: v for k, v in profile_smoke(profile).items() if k in have}
