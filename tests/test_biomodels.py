"""BioModels fetching against a local HTTP server (no test touches the internet), the cache, the
error cases, and the concentration-to-counts conversion on real and constructed models."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

import sbml_met
from sbml_met import biomodels
from sbml_met.errors import BioModelsError, InvalidArgumentError, UnsupportedSBMLError
from sbml_met.sbml import antimony_to_sbml, load_sbml, to_counts
from sbml_met.support import check_support

DATA = Path(__file__).parent / "data" / "biomodels"
REPRESSILATOR = "BIOMD0000000012"
TYSON = "BIOMD0000000006"


class _Server:
    """A tiny BioModels look-alike: routes (path, query) -> list of (status, body) answers."""

    def __init__(self):
        self.routes: dict[tuple[str, str], list[tuple[int, bytes, str]]] = {}
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                server.hits.append(self.path)
                key = (url.path, unquote(url.query))
                answers = server.routes.get(key)
                if not answers:
                    status, body, ctype = 404, b'{"errorMessage": "not found"}', "application/json"
                else:
                    status, body, ctype = answers[0] if len(answers) == 1 else answers.pop(0)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep test output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def entry(self, model_id: str, name: str, body: bytes, download_answers=None):
        listing = json.dumps({"main": [{"name": name, "fileSize": str(len(body))}],
                              "additional": [{"name": "extra.png"}]}).encode()
        self.routes[(f"/biomodels/model/files/{model_id}", "format=json")] = [(200, listing, "application/json")]
        answers = download_answers or [(200, body, "application/xml")]
        self.routes[(f"/biomodels/model/download/{model_id}", f"filename={name}")] = list(answers)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    s = _Server()
    monkeypatch.setenv(biomodels.URL_ENV, s.url)
    yield s
    s.close()


def _fetch(model_id, tmp_path, **kw):
    return biomodels.fetch(model_id, cache_dir=tmp_path / "cache", backoff=0.01, timeout=5, **kw)


def test_fetch_downloads_the_listed_main_file_and_caches_it(server, tmp_path):
    body = (DATA / f"{REPRESSILATOR}.xml").read_bytes()
    server.entry(REPRESSILATOR, f"{REPRESSILATOR}_url.xml", body)
    path = _fetch(REPRESSILATOR, tmp_path)
    assert path.name == f"{REPRESSILATOR}_url.xml"
    assert path.read_bytes() == body
    assert server.hits == [f"/biomodels/model/files/{REPRESSILATOR}?format=json",
                           f"/biomodels/model/download/{REPRESSILATOR}?filename={REPRESSILATOR}_url.xml"]
    # offline from the cache: the server is gone, the file is still served
    server.close()
    assert _fetch(REPRESSILATOR, tmp_path) == path
    net = sbml_met.load_biomodel(REPRESSILATOR, cache_dir=tmp_path / "cache")
    assert net.species == ("PX", "PY", "PZ", "X", "Y", "Z")
    assert net.initial_state.tolist() == [0, 0, 0, 0, 20, 0]
    # parameters from assignment rules are evaluated: kd_mRNA = ln 2 / tau_mRNA
    rates = net.propensities(np.array([0, 0, 0, 10, 0, 0.0]))
    assert rates[0] == pytest.approx(10 * np.log(2) / 2)


def test_main_file_name_is_taken_from_the_listing_not_guessed(server, tmp_path):
    body = (DATA / f"{REPRESSILATOR}.xml").read_bytes()
    server.entry(REPRESSILATOR, "Elowitz2000 repressilator.xml", body)
    path = _fetch(REPRESSILATOR, tmp_path)
    assert path.name == "Elowitz2000 repressilator.xml"
    assert server.hits[-1].endswith("filename=Elowitz2000%20repressilator.xml")


def test_revision_is_part_of_the_request_and_cache_key(server, tmp_path):
    body = (DATA / f"{REPRESSILATOR}.xml").read_bytes()
    server.entry(f"{REPRESSILATOR}.2", "rev2.xml", body)
    path = _fetch(REPRESSILATOR, tmp_path, revision=2)
    assert path.parent.name == f"{REPRESSILATOR}.2"
    with pytest.raises(InvalidArgumentError):
        _fetch(REPRESSILATOR, tmp_path, revision=0)


def test_unknown_id_and_bad_ids(server, tmp_path):
    with pytest.raises(BioModelsError, match="no BioModels entry 'BIOMD0000099999'"):
        _fetch("BIOMD0000099999", tmp_path)
    with pytest.raises(BioModelsError, match="not a BioModels id"):
        _fetch("BIOMD12", tmp_path)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.xml"))


def test_transient_server_errors_are_retried(server, tmp_path):
    body = (DATA / f"{REPRESSILATOR}.xml").read_bytes()
    server.entry(REPRESSILATOR, "m.xml", body,
                 download_answers=[(500, b"oops", "text/plain"), (503, b"busy", "text/plain"),
                                   (200, body, "application/xml")])
    path = _fetch(REPRESSILATOR, tmp_path, retries=3)
    assert path.read_bytes() == body
    downloads = [h for h in server.hits if "/download/" in h]
    assert len(downloads) == 3


def test_persistent_server_error_gives_up_with_biomodels_error(server, tmp_path):
    server.entry(REPRESSILATOR, "m.xml", b"", download_answers=[(500, b"oops", "text/plain")])
    with pytest.raises(BioModelsError, match="HTTP 500"):
        _fetch(REPRESSILATOR, tmp_path, retries=2)
    assert len([h for h in server.hits if "/download/" in h]) == 3
    assert not any((tmp_path / "cache").rglob("*.xml"))


def test_html_payload_is_refused_and_not_cached(server, tmp_path):
    html = b"<!DOCTYPE html><html><body>BioModels maintenance</body></html>"
    server.entry(REPRESSILATOR, "m.xml", html, download_answers=[(200, html, "text/html")])
    with pytest.raises(BioModelsError, match="did not return SBML"):
        _fetch(REPRESSILATOR, tmp_path)
    broken = b'<?xml version="1.0"?><sbml xmlns="http://www.sbml.org/sbml/level2/version4" level="2" version="4"><model'
    server.entry(TYSON, "t.xml", broken)
    with pytest.raises(BioModelsError, match="libsbml cannot read"):
        _fetch(TYSON, tmp_path)
    assert not any((tmp_path / "cache").rglob("*.xml"))


def test_bad_listing_is_a_biomodels_error(server, tmp_path):
    server.routes[(f"/biomodels/model/files/{TYSON}", "format=json")] = [(200, b"{}", "application/json")]
    with pytest.raises(BioModelsError, match="did not list a main file"):
        _fetch(TYSON, tmp_path)


def test_unreachable_server_without_cache(monkeypatch, tmp_path):
    s = _Server()
    url = s.url
    s.close()  # nothing listens there any more
    monkeypatch.setenv(biomodels.URL_ENV, url)
    with pytest.raises(BioModelsError, match="cannot reach"):
        biomodels.fetch(REPRESSILATOR, cache_dir=tmp_path, retries=1, backoff=0.01, timeout=2)


def test_base_url_default_and_override(monkeypatch):
    monkeypatch.delenv(biomodels.URL_ENV, raising=False)
    assert biomodels.base_url() == "https://www.ebi.ac.uk"
    monkeypatch.setenv(biomodels.URL_ENV, "http://127.0.0.1:9/")
    assert biomodels.base_url() == "http://127.0.0.1:9"


def test_ode_entry_loads_with_its_rate_rules_and_other_engines_name_them(server, tmp_path):
    body = (DATA / f"{TYSON}.xml").read_bytes()
    server.entry(TYSON, f"{TYSON}_url.xml", body)
    net = sbml_met.load_biomodel(TYSON, cache_dir=tmp_path / "cache", backoff=0.01)
    assert [r.variable for r in net.rate_rules] == ["u", "v"]
    with pytest.raises(UnsupportedSBMLError) as info:
        check_support(net, "fsp")
    assert {"u", "v"} <= {r.element_id for r in info.value.reasons}


# ------------------------------------------------------------------------------- to_counts
CONC = """
model conc
  compartment cell = 1;
  species A in cell = 0.5, B in cell = 0.2, C in cell = 0;
  bind: A + B => C; cell*kon*A*B;
  dim:  2 A => C;   kd*A^2;
  deg:  C => ;      kdeg*C;
  prod: => A;       kp;
  kon = 2; kd = 0.5; kdeg = 0.1; kp = 1;
end
"""


def test_concentration_model_needs_conversion_and_says_so():
    with pytest.raises(UnsupportedSBMLError) as info:
        load_sbml(antimony_to_sbml(CONC))
    assert {r.element_id for r in info.value.reasons} == {"A", "B"}


def test_to_counts_rescales_counts_and_mass_action_constants():
    vol = 100.0
    net = load_sbml(antimony_to_sbml(CONC), volume=vol)
    assert net.initial_state.tolist() == [50, 20, 0]  # round(concentration * volume)
    x = np.array([[50.0, 20.0, 3.0], [7.0, 1.0, 0.0]])
    a = net.propensities(x)
    kon, kd, kdeg, kp = 2, 0.5, 0.1, 1
    for row, (nA, nB, nC) in zip(a, x):
        # order m law: k * volume^(1-m) * falling factorials
        assert row == pytest.approx([kon / vol * nA * nB, kd / vol * nA * (nA - 1), kdeg * nC, kp * vol])
    # parameters keep their ids and model units
    assert net.with_parameters(kon=4).propensities(x[0])[0] == pytest.approx(4 / vol * 50 * 20)
    # the text form is SBML that loads the same way
    again = load_sbml(to_counts(antimony_to_sbml(CONC), volume=vol))
    assert np.allclose(again.propensities(x), a)


def test_to_counts_mean_matches_rate_equation_for_linear_model():
    # 0 -> A at kp (concentration/time), A -> 0 at kdeg*A: stationary mean count = kp/kdeg*volume
    src = antimony_to_sbml("""
    model lin
      compartment cell = 1;
      species A in cell = 0.25;
      prod: => A; cell*kp;
      deg: A => ; cell*kdeg*A;
      kp = 0.3; kdeg = 1;
    end""")
    net = load_sbml(src, volume=40)
    assert net.initial_state.tolist() == [10]
    res = sbml_met.simulate(net, [0, 12], n=3000, seed=3)
    mean = res.moments().query("time == 12")["mean"].iloc[0]
    assert mean == pytest.approx(0.3 / 1 * 40, abs=4 * np.sqrt(12 / 3000))


def test_to_counts_scales_non_mass_action_laws_by_particle_number():
    src = antimony_to_sbml("""
    model mm
      compartment cell = 1;
      species S in cell = 1, P in cell = 0;
      conv: S => P; Vmax*S/(Km + S);
      hill: => S; v0/(1 + P^2);
      deg:  P => ; k*P;
      Vmax = 1; Km = 0.5; v0 = 1; k = 1;
    end""")
    net = sbml_met.load_sbml(to_counts(src, volume=10))
    assert net.initial_state.tolist() == [10.0, 0.0]
    # a(n) = s V f(n / (s V)) with s = 1, V = 10: conv 10 * 1 * 1 / (0.5 + 1), hill 10 / (1 + 2^2)
    a = net.propensities([[10, 20]])[0]
    assert a == pytest.approx([10 / 1.5, 10 / 5, 20], rel=1e-12)


def test_to_counts_on_a_real_ode_entry_keeps_its_rate_rules():
    net = sbml_met.load_sbml(DATA / f"{TYSON}.xml", volume=100)  # non-mass-action laws convert
    assert [r.variable for r in net.rate_rules] == ["u", "v"] and net.time_varying


def test_to_counts_rejects_bad_volume():
    with pytest.raises(InvalidArgumentError):
        to_counts(antimony_to_sbml(CONC), volume=0)


def test_to_counts_with_species_in_amount_units_and_a_non_unit_compartment():
    # amounts (hasOnlySubstanceUnits) in a compartment of size 2: count = round(amount * volume),
    # propensity = volume * rate(amount = count / volume) with falling factorials
    src = antimony_to_sbml("""
    model amt
      compartment cell = 2;
      substanceOnly species A in cell = 0.5, B in cell = 0.25;
      bind: A + B => ; kon*A*B;
      pair: 2 A => ;   kd*A^2;
      kon = 3; kd = 0.5;
    end""")
    vol = 40.0
    net = load_sbml(src, volume=vol)
    assert net.initial_state.tolist() == [20, 10]
    assert net.compartments["cell"] == pytest.approx(2 * vol)
    a = net.propensities(np.array([20.0, 10.0]))
    assert a == pytest.approx([3 / vol * 20 * 10, 0.5 / vol * 20 * 19])


def test_fetch_keeps_the_entrys_sedml_and_run_takes_its_window(server, tmp_path):
    from sbml_met.window import choose_window

    body = (DATA / f"{REPRESSILATOR}.xml").read_bytes()
    server.entry(REPRESSILATOR, f"{REPRESSILATOR}_url.xml", body)
    listing = json.dumps({"main": [{"name": f"{REPRESSILATOR}_url.xml"}],
                          "additional": [{"name": "extra.png"}, {"name": "sim.sedml"}]}).encode()
    server.routes[(f"/biomodels/model/files/{REPRESSILATOR}", "format=json")] = [(200, listing, "application/json")]
    sedml = (b'<?xml version="1.0"?><sedML xmlns="http://sed-ml.org/sed-ml/level1/version2"><listOfSimulations>'
             b'<uniformTimeCourse id="s" initialTime="0" outputStartTime="0" outputEndTime="600" numberOfPoints="300"/>'
             b'</listOfSimulations><listOfModels><model id="m" source="urn:miriam:biomodels.db:BIOMD0000000012"/>'
             b'</listOfModels></sedML>')
    server.routes[(f"/biomodels/model/download/{REPRESSILATOR}", "filename=sim.sedml")] = [(200, sedml, "application/xml")]
    path = _fetch(REPRESSILATOR, tmp_path)
    assert (path.parent / "sim.sedml").read_bytes() == sedml
    window = choose_window(sbml_met.load_sbml(path), path)
    assert window.kind == "sedml" and window.grid[-1] == 600 and "sim.sedml" in window.how
