"""``report.html`` of ``sbml-met run``: one self-contained page a biologist can mail to a colleague.

The figures are embedded as base64 PNG data, so the page needs no other file; it holds the
verdicts, the validation table, moments at the report times, timings, the model's reactions and
parameters, and the provenance (command line, seed, sample sizes, package versions).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

PACKAGES = ("sbml-met", "numpy", "scipy", "pandas", "matplotlib", "torch", "libroadrunner", "tellurium",
            "python-libsbml")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.ok { color: #11652a; font-weight: bold; } .bad { color: #b00020; font-weight: bold; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; } code { background: #f5f5f5; padding: 0.1em 0.3em; }
table.prov td { text-align: left; }
"""

CAPTIONS = {
    "marginals.png": "Marginal distributions at the report times: SSA as bars, every other method as an "
                     "outline, the exact FSP solution thin and black on top; 0/1 species as bars side by side; "
                     "species with many distinct counts as histograms on bins shared by every method. "
                     "Boundary and constant species are left out.",
    "distributions.png": "Each species' whole distribution over time on the SSA's grid: the exact probability "
                         "(purple, log scale; counts grouped into at most 300 rows) with every method's median and "
                         "5%/95% quantiles; 0/1 species as P(= 1).",
    "moments.png": "Means over time, every method on the same grid (the exact one black, on top), with "
                   "±1 SD: a band around the SSA, dotted lines around the others.",
    "trajectories.png": "A few SSA trajectories of the run's ensemble: steps at every reaction event where "
                        "trajectories have few events, else counts held between the grid times.",
}


def versions() -> dict[str, str]:
    """Python and the installed versions of the packages a run depends on."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _table(df: pd.DataFrame, index: bool = False) -> str:
    return df.to_html(index=index, border=0, float_format=lambda x: f"{x:.4g}", na_rep="")


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = html.escape(CAPTIONS.get(path.name, path.name))
    return (f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(path.name)}: {caption}</figcaption></figure>")


def _verdicts(report: Any) -> str:
    from .plot import method_colour  # the figures' colour of each method, beside its name

    if not report.verdicts:
        return "<p>No validation (no Tellurium reference).</p>"
    rows = []
    val = report.tables.get("validation")
    for method, ok in report.verdicts.items():
        part = val[val["method"] == method] if val is not None and "method" in val else pd.DataFrame()
        failed = int((part["verdict"] != "ok").sum()) if len(part) else 0
        cls, word = ("ok", "agrees with Tellurium") if ok else ("bad", "DISAGREES with Tellurium")
        swatch = (f'<span style="display:inline-block;width:0.8em;height:0.8em;margin-right:0.4em;'
                  f'background:{method_colour(method)}"></span>')
        rows.append(f'<tr><td>{swatch}{html.escape(method)}</td><td class="{cls}">{word}</td>'
                    f"<td>{len(part) - failed} of {len(part)}</td></tr>")
    return ("<table><tr><th>method</th><th>verdict</th><th>checks passed</th></tr>" + "".join(rows)
            + "</table>")


def _moments(report: Any, times: list[float]) -> str:
    m = report.tables.get("moments")
    if m is None or m.empty:
        return ""
    near = m[m["time"].apply(lambda t: any(abs(t - x) < 1e-9 for x in times))]
    wide = near.pivot_table(index=["time", "species"], columns="method", values=["mean", "std"])
    wide.columns = [f"{stat} {method}" for stat, method in wide.columns]
    return _table(wide.reset_index())


def _model(net: Any) -> str:
    params = pd.DataFrame({"parameter": list(net.parameters), "value": list(net.parameters.values())})
    init = pd.DataFrame({"species": list(net.species), "initial count": list(net.initial_state)})
    return ("<h3>Reactions</h3>" + _table(net.summary()) + "<h3>Parameters</h3>" + _table(params)
            + "<h3>Initial state</h3>" + _table(init))


def _provenance(prov: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td><code>{html.escape(str(v))}</code></td></tr>"
                   for k, v in prov.items())
    pk = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in versions().items())
    return f"<table class='prov'>{rows}</table><h3>Package versions</h3><table class='prov'>{pk}</table>"


def render_html(report: Any, net: Any, figures: list[Path], provenance: dict[str, Any]) -> str:
    """The page as a string; ``report`` is a :class:`~sbml_met.run.RunReport`, ``figures`` PNG files."""
    banner = ('<p class="ok">Every method agrees with the Tellurium reference.</p>' if report.ok else
              '<p class="bad">At least one method DISAGREES with the Tellurium reference (see below).</p>')
    timings = pd.DataFrame({"step": list(report.timings), "seconds": list(report.timings.values())})
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
    val = report.tables.get("validation")
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>sbml-met run: "
        f"{html.escape(report.model)}</title><style>{STYLE}</style></head><body>",
        f"<h1>sbml-met run: {html.escape(report.model)}</h1>",
        f"<p>{html.escape(_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'))}</p>", banner,
        (f"<p>Time window: {html.escape(report.window)}.</p>" if getattr(report, "window", "") else ""),
        "<h2>Verdicts</h2>", _verdicts(report), (f"<ul>{notes}</ul>" if notes else ""),
        "<h2>Figures</h2>", "".join(_image(f) for f in figures),
        "<h2>Moments at the report times</h2>", _moments(report, list(provenance.get("report times", []))),
        "<h2>Validation checks</h2>",
        (f"<details><summary>{len(val)} checks (time, species, method)</summary>{_table(val)}</details>"
         if val is not None else "<p>none</p>"),
        "<h2>Timings</h2>", _table(timings),
        "<h2>Model</h2>", _model(net),
        "<h2>Provenance</h2>", _provenance(provenance),
        "</body></html>",
    ]
    return "\n".join(parts)
