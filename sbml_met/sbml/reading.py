"""Reading SBML and Antimony: libsbml documents checked for errors (the only place files are parsed)."""

from __future__ import annotations

import os
from pathlib import Path

import libsbml

from ..errors import SBMLParseError


def read_document(source: str | os.PathLike) -> libsbml.SBMLDocument:
    """Read SBML from a path or an SBML string and check it with libsbml (errors only)."""
    text = str(source)
    if isinstance(source, os.PathLike) or (not text.lstrip().startswith("<") and len(text) < 4096):
        path = Path(source)
        if not path.is_file():
            raise SBMLParseError(f"no such SBML file: {path}")
        doc = libsbml.readSBMLFromFile(str(path))
    else:
        doc = libsbml.readSBMLFromString(text)
    _raise_on_errors(doc, "reading")
    if doc.getModel() is None:
        raise SBMLParseError("the SBML document has no <model>")
    doc.setConsistencyChecks(libsbml.LIBSBML_CAT_UNITS_CONSISTENCY, False)
    doc.setConsistencyChecks(libsbml.LIBSBML_CAT_MODELING_PRACTICE, False)
    doc.checkConsistency()
    _raise_on_errors(doc, "validating")
    return doc


def _raise_on_errors(doc: libsbml.SBMLDocument, stage: str) -> None:
    errors = []
    for i in range(doc.getNumErrors()):
        e = doc.getError(i)
        if e.getSeverity() >= libsbml.LIBSBML_SEV_ERROR:
            errors.append(f"line {e.getLine()}: {e.getMessage().strip()}")
    if errors:
        shown = "\n".join(f"  - {m}" for m in errors[:10])
        more = f"\n  ... and {len(errors) - 10} more" if len(errors) > 10 else ""
        raise SBMLParseError(f"invalid SBML ({stage}): {len(errors)} error(s):\n{shown}{more}", tuple(errors))


def antimony_to_sbml(text: str, level: int = 3, version: int = 1) -> str:
    """Convert Antimony text to SBML (Level 3 Version 1 by default) with the antimony library."""
    import antimony

    antimony.clearPreviousLoads()
    if antimony.loadAntimonyString(text) < 0:
        raise SBMLParseError(f"invalid Antimony: {antimony.getLastError().strip()}")
    module = antimony.getMainModuleName()
    sbml = antimony.getSBMLString(module)
    if not sbml:
        raise SBMLParseError(f"Antimony produced no SBML: {antimony.getLastError().strip()}")
    doc = libsbml.readSBMLFromString(sbml)
    if (doc.getLevel(), doc.getVersion()) != (level, version):
        props = libsbml.ConversionProperties(libsbml.SBMLNamespaces(level, version))
        props.addOption("setLevelAndVersion", True)
        props.addOption("strict", False)
        if doc.convert(props) != libsbml.LIBSBML_OPERATION_SUCCESS:
            raise SBMLParseError(f"could not convert the Antimony model to SBML L{level}V{version}")
    return libsbml.writeSBMLToString(doc)
