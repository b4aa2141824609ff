"""Bundled models: ``load(name)``, ``list()``, ``path(name)``, ``describe(name)``.

Each model is an Antimony source ``sbml_models/NAME.ant`` (first line: a one-line description)
with the SBML Level 3 Version 1 generated from it, ``sbml_models/NAME.xml``.
Regenerate the SBML after editing a source with ``python -m sbml_met.models``.
"""

from __future__ import annotations

import builtins
from importlib import resources
from pathlib import Path
from typing import Sequence

from .errors import UnknownIdError
from .network import ReactionNetwork


AUTO_MAX_COUNT = 1e6  # --volume auto keeps a model's own counts up to this many molecules
AUTO_MIN_PEAK = 10.0  # ... unless saturating laws read concentrations that never reach this many


def load_model(spec: str, volume: float | str | None = None, continuous: Sequence[str] | str = ()) -> ReactionNetwork:
    """A bundled model name, an SBML/Antimony file path, or a BioModels id (one resolver for the
    command line, ``run`` and notebooks).

    ``volume`` converts amounts in concentration units to molecule counts (see
    :func:`sbml_met.sbml.to_counts`); ``"auto"`` keeps the model's own counts where they are whole
    numbers of at most ``AUTO_MAX_COUNT`` molecules (initially and in the deterministic solution),
    unless saturating laws (Michaelis-Menten, Hill) read concentrations that never reach
    ``AUTO_MIN_PEAK``, else converts with :func:`sbml_met.sbml.suggest_volume`; a note on the
    network says which.
    ``continuous``: species ids (a list or "A,B") integrated as an ODE, after any conversion (see
    :func:`sbml_met.sbml.load_sbml`)."""
    if isinstance(volume, str):
        if volume.strip().lower() == "auto":
            return with_continuous(_load_auto(spec), continuous)
        volume = _volume_number(volume)
    return with_continuous(_load(spec, volume), continuous)


def with_continuous(net: ReactionNetwork, continuous: Sequence[str] | str) -> ReactionNetwork:
    """``net`` rebuilt from its SBML with ``continuous`` species integrated as an ODE (unchanged
    when there are none); its name and notes kept."""
    from dataclasses import replace

    from .sbml import load_sbml

    if not continuous:
        return net
    rebuilt = load_sbml(net.to_sbml(), continuous=continuous)  # reads "A,B" as load_sbml does
    return replace(rebuilt, name=net.name, notes=net.notes + tuple(n for n in rebuilt.notes if n not in net.notes))


def _volume_number(text: str) -> float:
    from .errors import InvalidArgumentError

    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > 0 and value < float("inf")):
        raise InvalidArgumentError(f"bad volume {text!r}: give a number > 0 (molecules per unit of "
                                   "substance, e.g. --volume 1000) or auto")
    return value


def _load(spec: str, volume: float | None) -> ReactionNetwork:
    from .errors import InvalidArgumentError
    from .sbml import load_sbml

    if spec in list():
        return load(spec) if volume is None else load_sbml(path(spec), volume=volume)
    source = model_source(spec)
    if isinstance(source, str):  # Antimony, as SBML text
        net = load_sbml(source) if volume is None else load_sbml(source, volume=volume)
        return _named_after_file(net, Path(spec))
    if source is not None:
        return load_sbml(source) if volume is None else load_sbml(source, volume=volume)
    if spec.upper().startswith(("BIOMD", "MODEL")):
        from .biomodels import load_biomodel

        return load_biomodel(spec, volume=volume)
    raise InvalidArgumentError(
        f"no model {spec!r}: give a bundled name ({', '.join(list())}), an SBML file path, "
        "or a BioModels id (BIOMD...)"
    )


def _named_after_file(net: ReactionNetwork, path: Path) -> ReactionNetwork:
    """An Antimony file without 'model NAME ... end' names its network after the file."""
    from dataclasses import replace

    from .sbml.reading import UNNAMED_MODEL

    return replace(net, name=path.stem) if net.name == UNNAMED_MODEL else net


def model_source(spec: str) -> Path | str | None:
    """Where the SBML of ``spec`` comes from: a file path (a bundled model's or a BioModels
    entry's cached file included), SBML text converted from an Antimony file, or None."""
    from .sbml import antimony_to_sbml

    if spec in list():
        return path(spec)
    p = Path(spec)
    if p.is_file():
        if p.suffix in (".ant", ".antimony", ".txt"):
            return antimony_to_sbml(p.read_text(encoding="utf-8"))
        return p
    if spec.upper().startswith(("BIOMD", "MODEL")):
        from .biomodels import fetch

        return fetch(spec)
    return None


def _load_auto(spec: str) -> ReactionNetwork:
    """``load_model(spec, volume="auto")``: the model's own counts when they fit, else converted."""
    from dataclasses import replace

    from .errors import SbmlMetError
    from .sbml import suggest_volume

    try:
        net = _load(spec, None)
    except SbmlMetError as e:
        if "volume" not in str(e):
            raise
        why = "its amounts are not whole numbers of molecules"
    else:
        peak = _peak_count(net)
        saturating = _saturating_laws(net)
        if peak <= AUTO_MAX_COUNT and not (peak < AUTO_MIN_PEAK and saturating):
            return replace(net, notes=net.notes + (
                f"--volume auto: counts as the model gives them (at most {peak:.3g} molecules, "
                "initially and in its deterministic solution); no conversion",))
        why = (f"its counts reach {peak:.3g} molecules" if peak > AUTO_MAX_COUNT else
               f"written in concentrations, its species stay below {AUTO_MIN_PEAK:g} (at most {peak:.3g}) while "
               f"saturating laws ({', '.join(saturating[:3])}) read them: as counts that would be a handful "
               "of molecules")
    source = model_source(spec)
    volume = suggest_volume(source)
    net = _load(spec, volume)
    return replace(net, notes=net.notes + (
        f"--volume auto: volume={volume:g} molecules per unit of substance ({why}; this volume puts "
        "the median species near 300 molecules, and each one present at least one where that fits)",))


def _saturating_laws(net: ReactionNetwork) -> builtins.list[str]:
    """Reactions whose law divides by an expression that reads a concentration species (Michaelis-Menten
    ``V*S/(Km + S)``, Hill ``K^n/(K^n + Y^n)``): laws written for concentrations, not counts."""
    import libsbml

    from ._math import names_in, node_type

    concentrations = {s.id for s in net.species_info if not s.has_only_substance_units}

    def divides_by_species(node) -> bool:
        if node is None:
            return False
        if node_type(node) == libsbml.AST_DIVIDE and node.getNumChildren() == 2 and \
                names_in(node.getChild(1)) & concentrations:
            return True
        return any(divides_by_species(node.getChild(i)) for i in range(node.getNumChildren()))

    return [r.id for r in net.reactions if divides_by_species(getattr(r, "math", None))]


def _peak_count(net: ReactionNetwork) -> float:
    """The largest count of ``net`` initially and in its deterministic solution over its window."""
    from .window import deterministic_window

    peak = float(max(net.initial_state.max(initial=0.0), 0.0))
    window = deterministic_window(net)
    return max(peak, window.peak or 0.0)


def _folder() -> Path:
    return Path(str(resources.files("sbml_models")))


def list() -> builtins.list[str]:  # noqa: A001 - the public name the API promises
    """Names of the bundled models."""
    return sorted(p.stem for p in _folder().glob("*.ant"))


def _check(name: str) -> None:
    if name not in list():
        raise UnknownIdError(f"no bundled model '{name}'; bundled models are: {', '.join(list())}")


def path(name: str) -> Path:
    """Path of the bundled SBML file of ``name``."""
    _check(name)
    return _folder() / f"{name}.xml"


def antimony_source(name: str) -> str:
    """The Antimony source text of a bundled model."""
    _check(name)
    return (_folder() / f"{name}.ant").read_text(encoding="utf-8")


def describe(name: str) -> str:
    """The one-line description of a bundled model."""
    first = antimony_source(name).splitlines()[0]
    return first.lstrip("/ ").strip()


def load(name: str) -> ReactionNetwork:
    """Load a bundled model as a ReactionNetwork."""
    from .sbml import load_sbml

    return load_sbml(path(name))


def generate_sbml(name: str) -> str:
    """SBML (L3v1) generated now from the model's Antimony source."""
    from .sbml import antimony_to_sbml

    return antimony_to_sbml(antimony_source(name))


def regenerate() -> builtins.list[Path]:
    """Rewrite every bundled SBML file from its Antimony source; returns the paths written."""
    written = []
    for name in list():
        target = _folder() / f"{name}.xml"
        tmp = target.with_suffix(".xml.tmp")
        tmp.write_text(generate_sbml(name), encoding="utf-8")
        tmp.replace(target)
        written.append(target)
    return written


if __name__ == "__main__":
    for p in regenerate():
        print(p)
