"""Reading SBML and Antimony: libsbml documents checked for errors (the only place files are parsed)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import libsbml

from ..errors import SBMLParseError


def read_document(source: str | os.PathLike) -> libsbml.SBMLDocument:
    """Read SBML from a path or an SBML string and check it with libsbml (errors only).

    Antimony (a ``.ant`` file, or text that is neither XML nor a path) is converted first, as
    :func:`~sbml_met.sbml.load_antimony` does; a missing file is an SBMLParseError."""
    path = _xml_file(source)
    doc = libsbml.readSBMLFromFile(str(path)) if path else libsbml.readSBMLFromString(sbml_text(source))
    _raise_on_errors(doc, "reading")
    if doc.getModel() is None:
        raise SBMLParseError("the SBML document has no <model>")
    doc.setConsistencyChecks(libsbml.LIBSBML_CAT_UNITS_CONSISTENCY, False)
    doc.setConsistencyChecks(libsbml.LIBSBML_CAT_MODELING_PRACTICE, False)
    doc.checkConsistency()
    _raise_on_errors(doc, "validating")
    return doc


def sbml_text(source: str | os.PathLike) -> str:
    """SBML text of ``source``: an SBML or Antimony file path, SBML text, or Antimony text."""
    text = str(source)
    if isinstance(source, os.PathLike) or (not text.lstrip().startswith("<") and _could_be_path(text)):
        path = Path(source)
        if path.is_file():
            content = path.read_text(encoding="utf-8", errors="replace")
            return content if content.lstrip().startswith("<") else _antimony_or_error(content, str(path))
        if isinstance(source, os.PathLike) or not _looks_like_antimony(text):
            raise SBMLParseError(f"no such SBML file: {path} (load_sbml reads a path to an SBML or "
                                 "Antimony file, SBML text or Antimony text)")
    return text if text.lstrip().startswith("<") else _antimony_or_error(text, "the text given")


def _xml_file(source: str | os.PathLike) -> Path | None:
    """``source`` as the path of an existing XML (SBML) file, else None."""
    text = str(source)
    if not isinstance(source, os.PathLike) and (text.lstrip().startswith("<") or not _could_be_path(text)):
        return None
    path = Path(source)
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        return path if f.read(4096).lstrip().startswith(b"<") else None


def _could_be_path(text: str) -> bool:
    return len(text) < 4096 and "\n" not in text


def _looks_like_antimony(text: str) -> bool:
    """Text with the marks of an Antimony model (a reaction arrow, an assignment, a statement end)."""
    return any(mark in text for mark in ("->", "=>", "=", ";", "\n"))


def _antimony_or_error(text: str, where: str) -> str:
    """SBML of Antimony ``text``; an SBMLParseError naming ``where`` and load_antimony otherwise."""
    try:
        return antimony_to_sbml(text)
    except SBMLParseError as e:
        raise SBMLParseError(f"{where} is neither SBML (XML) nor valid Antimony: {e} (load_antimony(...) "
                             "reads Antimony, load_sbml(...) SBML or Antimony)") from None


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


UNNAMED_MODEL = "model"  # the id of Antimony text written without 'model NAME ... end'
_NAME_WITHOUT_COLON = re.compile(r"^\s*([A-Za-z_]\w*)\s+([A-Za-z_][^;:]*?)\s*(->|=>)(.*)$")


def _check_reaction_names(text: str, doc: libsbml.SBMLDocument) -> None:
    """A reaction written ``J1 X -> ;`` (its name without the colon) is read by Antimony as an
    unnamed reaction ``_J0`` of other species; refuse it, naming the line and the fix."""
    m = doc.getModel()
    if m is None or not any(re.fullmatch(r"_J\d+", r.getId()) for r in m.getListOfReactions()):
        return
    for number, line in enumerate(text.splitlines(), start=1):
        code = line.split("//")[0].split("#")[0]
        found = _NAME_WITHOUT_COLON.match(code)
        if found:
            name, left, arrow, right = found.groups()
            raise SBMLParseError(
                f"Antimony line {number}: '{code.strip()}' names its reaction without a colon, so Antimony "
                f"reads '{name} {left}' as the reactants of an unnamed reaction; write "
                f"'{name}: {left} {arrow}{right}' (or leave the name out)")


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
    _check_reaction_names(text, doc)
    if module == "__main" and doc.getModel() is not None:  # no 'model NAME ... end': not "__main"
        doc.getModel().setId(UNNAMED_MODEL)
    if (doc.getLevel(), doc.getVersion()) != (level, version):
        props = libsbml.ConversionProperties(libsbml.SBMLNamespaces(level, version))
        props.addOption("setLevelAndVersion", True)
        props.addOption("strict", False)
        if doc.convert(props) != libsbml.LIBSBML_OPERATION_SUCCESS:
            raise SBMLParseError(f"could not convert the Antimony model to SBML L{level}V{version}")
    return libsbml.writeSBMLToString(doc)
