"""BioModels entries: download an entry's main SBML file once, keep it in a user cache, load it.

The BioModels REST API is used exactly as documented: ``/biomodels/model/files/{ID}?format=json``
lists the entry's files (the main SBML file is ``main[0].name``), and
``/biomodels/model/download/{ID}?filename={name}`` returns it. File names are never guessed.

The base URL is ``https://www.ebi.ac.uk`` unless the environment variable
``SBML_MET_BIOMODELS_URL`` says otherwise (tests point it at a local server). Downloads are
checked (the payload must parse as SBML with libsbml) before they are written, atomically, into the
cache; once cached an entry is read from disk without any network access (pass ``refresh=True``
to download it again).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from .errors import BioModelsError, InvalidArgumentError
from .network import ReactionNetwork

DEFAULT_URL = "https://www.ebi.ac.uk"
URL_ENV = "SBML_MET_BIOMODELS_URL"
ID_PATTERN = re.compile(r"^(BIOMD|MODEL)\d{10}$")
USER_AGENT = "sbml-met (python urllib)"


class _HTTPFailure(Exception):
    """One failed request: ``retry`` says whether trying again may help."""

    def __init__(self, message: str, retry: bool, status: int | None = None):
        super().__init__(message)
        self.retry = retry
        self.status = status


def base_url() -> str:
    """The BioModels server: ``$SBML_MET_BIOMODELS_URL`` or https://www.ebi.ac.uk."""
    return (os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")


def default_cache_dir() -> Path:
    """The user cache folder for BioModels entries (platformdirs, else ~/.cache/sbml-met)."""
    try:
        import platformdirs

        root = Path(platformdirs.user_cache_dir("sbml-met"))
    except ImportError:  # pragma: no cover - platformdirs is a dependency
        root = Path.home() / ".cache" / "sbml-met"
    return root / "biomodels"


def _check_id(model_id: str) -> str:
    mid = str(model_id).strip()
    if not ID_PATTERN.match(mid):
        raise BioModelsError(
            f"'{model_id}' is not a BioModels id (expected BIOMD or MODEL followed by 10 digits, "
            "e.g. BIOMD0000000012)"
        )
    return mid


def _get(url: str, timeout: float, retries: int, backoff: float) -> bytes:
    """GET ``url``; retry network errors, timeouts, 429 and 5xx with exponential back-off."""
    last: _HTTPFailure | None = None
    for attempt in range(int(retries) + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        try:
            req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) only
                return resp.read()
        except urllib.error.HTTPError as e:
            retry = e.code == 429 or e.code >= 500
            last = _HTTPFailure(f"HTTP {e.code} {e.reason} from {url}", retry, e.code)
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            reason = getattr(e, "reason", e)
            last = _HTTPFailure(f"cannot reach {url}: {reason}", True)
        if not last.retry:
            break
    assert last is not None
    raise last


def _check_sbml(payload: bytes, model_id: str, url: str) -> None:
    """Raise BioModelsError unless ``payload`` parses as an SBML document with a model."""
    import libsbml

    head = payload[:2048].lstrip().lower()
    if not (head.startswith(b"<?xml") or head.startswith(b"<sbml")) or b"<sbml" not in payload[:65536]:
        shown = payload[:80].decode("utf-8", "replace").strip().replace("\n", " ")
        raise BioModelsError(f"{model_id}: {url} did not return SBML (it starts with {shown!r})")
    doc = libsbml.readSBMLFromString(payload.decode("utf-8", "replace"))
    errors = [doc.getError(i).getMessage().strip() for i in range(doc.getNumErrors())
              if doc.getError(i).getSeverity() >= libsbml.LIBSBML_SEV_ERROR]
    if errors or doc.getModel() is None:
        why = errors[0] if errors else "the document has no <model>"
        raise BioModelsError(f"{model_id}: {url} returned a file that libsbml cannot read: {why}")


def _fetch_sedml(listing: bytes, root: str, quoted: str, entry: Path, timeout: float) -> None:
    """Best effort: the entry's SED-ML files (its simulation settings, which ``sbml-met run``
    takes its time window from) beside the SBML file; an entry without them, or a failed
    download, leaves the SBML alone."""
    from .io import atomic_write

    try:
        extra = json.loads(listing.decode("utf-8")).get("additional") or []
        names = [f["name"] for f in extra if isinstance(f, dict) and isinstance(f.get("name"), str)]
    except (ValueError, AttributeError):
        return
    for name in names:
        if not name.lower().endswith(".sedml") or "/" in name or "\\" in name or name.startswith("."):
            continue
        url = f"{root}/biomodels/model/download/{quoted}?filename={urllib.parse.quote(name)}"
        try:
            payload = _get(url, timeout, 0, 0.0)
        except _HTTPFailure:
            continue
        atomic_write(entry / name, lambda p, data=payload: p.write_bytes(data), overwrite=True)


def _main_file_name(listing: bytes, model_id: str, url: str) -> str:
    try:
        data = json.loads(listing.decode("utf-8"))
        name = data["main"][0]["name"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise BioModelsError(f"{model_id}: {url} did not list a main file (unexpected answer)") from None
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise BioModelsError(f"{model_id}: the main file name {name!r} listed by {url} is not usable")
    return name


def fetch(
    model_id: str,
    cache_dir: str | os.PathLike | None = None,
    revision: int | None = None,
    *,
    refresh: bool = False,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
) -> Path:
    """Path of the cached main SBML file of BioModels entry ``model_id``, downloading it if needed.

    ``revision`` asks for one revision of the entry (``ID.revision`` in the API); without it the
    latest is fetched once and then served from the cache (``refresh=True`` downloads again).
    Raises BioModelsError for unknown ids, HTTP errors (after ``retries`` retries of transient
    ones, waiting ``backoff`` seconds, doubling) and payloads that are not SBML.
    """
    mid = _check_id(model_id)
    if revision is not None:
        if int(revision) != revision or int(revision) < 1:
            raise InvalidArgumentError(f"revision must be a positive integer, got {revision!r}")
        key = f"{mid}.{int(revision)}"
    else:
        key = mid
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry = folder / key
    cached = sorted(entry.glob("*.xml")) if entry.is_dir() else []
    if cached and not refresh:
        return cached[0]

    root = base_url()
    quoted = urllib.parse.quote(key)
    files_url = f"{root}/biomodels/model/files/{quoted}?format=json"
    try:
        listing = _get(files_url, timeout, retries, backoff)
    except _HTTPFailure as e:
        if e.status in (400, 404):
            raise BioModelsError(f"no BioModels entry '{key}' ({e})") from None
        hint = " (the cached copy is used offline once downloaded)" if not cached else ""
        raise BioModelsError(f"{key}: could not list the entry's files: {e}{hint}") from None
    name = _main_file_name(listing, key, files_url)
    download_url = f"{root}/biomodels/model/download/{quoted}?filename={urllib.parse.quote(name)}"
    try:
        payload = _get(download_url, timeout, retries, backoff)
    except _HTTPFailure as e:
        raise BioModelsError(f"{key}: could not download '{name}': {e}") from None
    _check_sbml(payload, key, download_url)

    from .io import atomic_write

    target = entry / (name if name.lower().endswith(".xml") else f"{name}.xml")
    atomic_write(target, lambda p: p.write_bytes(payload), overwrite=True)
    _fetch_sedml(listing, root, quoted, entry, timeout)
    for old in cached:
        if old != target:
            old.unlink(missing_ok=True)
    return target


def load_biomodel(
    model_id: str,
    cache_dir: str | os.PathLike | None = None,
    revision: int | None = None,
    volume: float | None = None,
    **fetch_options,
) -> ReactionNetwork:
    """Fetch (or read from the cache) a BioModels entry and load it as a ReactionNetwork.

    Entries written as deterministic ODE models raise one UnsupportedSBMLError listing every
    feature that blocks exact stochastic simulation. Mass-action entries in concentration units
    can be converted to molecule counts with ``volume`` (see :func:`sbml_met.sbml.to_counts`).
    """
    from .sbml import load_sbml

    path = fetch(model_id, cache_dir=cache_dir, revision=revision, **fetch_options)
    if volume is None:
        return load_sbml(path)
    return load_sbml(path, volume=volume)
