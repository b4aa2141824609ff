"""Bundled models: ``load(name)``, ``list()``, ``path(name)``, ``describe(name)``.

Each model is an Antimony source ``sbml_models/NAME.ant`` (first line: a one-line description)
with the SBML Level 3 Version 1 generated from it, ``sbml_models/NAME.xml``.
Regenerate the SBML after editing a source with ``python -m sbml_met.models``.
"""

from __future__ import annotations

import builtins
from importlib import resources
from pathlib import Path

from .errors import UnknownIdError
from .network import ReactionNetwork


def load_model(spec: str) -> ReactionNetwork:
    """A bundled model name, an SBML/Antimony file path, or a BioModels id (one resolver for the
    command line, ``run`` and notebooks)."""
    from .errors import InvalidArgumentError
    from .sbml import load_antimony, load_sbml

    if spec in list():
        return load(spec)
    path = Path(spec)
    if path.is_file():
        if path.suffix in (".ant", ".antimony", ".txt"):
            return load_antimony(path.read_text())
        return load_sbml(path)
    if spec.upper().startswith(("BIOMD", "MODEL")):
        from .biomodels import load_biomodel

        return load_biomodel(spec)
    raise InvalidArgumentError(
        f"no model {spec!r}: give a bundled name ({', '.join(list())}), an SBML file path, "
        "or a BioModels id (BIOMD...)"
    )


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
    return (_folder() / f"{name}.ant").read_text()


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
        tmp.write_text(generate_sbml(name))
        tmp.replace(target)
        written.append(target)
    return written


if __name__ == "__main__":
    for p in regenerate():
        print(p)
