"""The trained MET as a solver (:class:`MET`), its one-file checkpoints and the bundled models.

A checkpoint is one ``torch.save`` file of plain data: weights, config, prompt box and times, the
network's SBML and fingerprint, training log and validation figures. It is written atomically and
never overwrites unless asked. :func:`load` rebuilds the network from the stored SBML unless one is
given, in which case its fingerprint must match (else :class:`CheckpointMismatchError`).
"""

from __future__ import annotations

import io
import os
import warnings
from importlib import resources
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import torch

from ..errors import CheckpointMismatchError, InvalidArgumentError, UnknownIdError
from ..io import atomic_write
from ..network import check_times
from ..results import Distribution
from ._threads import SMALL_WORK, scoped_threads
from ._warn import user_stacklevel
from .model import METConfig, METNet, ancestral_sample, check_vocab, enumerate_joint, masked_log_prob
from .prompts import PromptSpace

FORMAT = "sbml-met/met-checkpoint"
VERSION = 1
MAX_PREFIXES = 1_000_000


class MET:
    """A trained Master Equation Transformer for one network: the joint distribution of molecule
    counts for any parameter point in its box, initial counts and time, in one network pass."""

    def __init__(self, net: METNet, space: PromptSpace, network, log: list | None = None,
                 validation: dict | None = None, meta: dict | None = None):
        self.net = net.eval()
        self.space = space
        self.network = network
        self.log = list(log or [])
        self.validation = dict(validation or {})
        self.meta = dict(meta or {})

    # ------------------------------------------------------------------ properties
    @property
    def species(self) -> tuple[str, ...]:
        return tuple(self.network.species)

    @property
    def config(self) -> METConfig:
        return self.net.config

    @property
    def box(self) -> dict[str, tuple[float, float]]:
        return self.space.box

    @property
    def times(self) -> tuple[float, float]:
        return (self.space.t_min, self.space.t_max)

    @property
    def n_parameters(self) -> int:
        return self.net.n_parameters()

    @property
    def conservation(self):
        """The network's conservation laws (:class:`~sbml_met.conservation.ConservationLaws`); every
        answer gives probability 0 to states that break one."""
        if "_laws" not in self.__dict__:
            from ..conservation import conservation_laws

            self._laws = conservation_laws(self.network)
        return self._laws

    def _mask(self, init: Mapping[str, float] | None = None):
        """The ConservationMask for the prompt's initial counts (None without laws); cached."""
        if not len(self.conservation):
            return None
        x0 = np.asarray(self.network.initial_state, dtype=float).copy()
        for k, v in (init or {}).items():
            x0[self.network.species_index(k)] = float(v)
        key = tuple(self.conservation.totals_of(np.rint(x0)).tolist())
        cache = self.__dict__.setdefault("_masks", {})
        if key not in cache:
            from ..conservation import ConservationMask

            cache.clear() if len(cache) > 64 else None
            cache[key] = ConservationMask(self.conservation, np.rint(x0), self.config.vocab)
        return cache[key]

    def __repr__(self) -> str:
        box = ", ".join(f"{k} in [{a:g}, {b:g}]" for k, (a, b) in self.box.items())
        heads = "" if not any(self.net.mixture) else ", heads " + "".join(
            "M" if m else "C" for m in self.net.mixture) + f" (M: {self.config.mixture_k}-logistic mixture)"
        return (f"MET({self.network.name}: {self.n_parameters} weights, {box}, t in "
                f"[{self.space.t_min:g}, {self.space.t_max:g}], vocab {self.config.vocab}{heads})")

    @property
    def accuracy(self) -> dict:
        """What every answer of this MET carries (``Distribution.metadata``, ``DataFrame.attrs``):
        that it is an approximation, its measured held-out accuracy and the box it holds for."""
        v = self.validation
        out = {"approximation": True, "accuracy": "held-out mean marginal Hellinger distance against "
               + ("exact FSP" if v.get("reference") == "exact" else "SSA histograms"),
               "held_out_hellinger_mean": v.get("hellinger_mean"), "held_out_hellinger_max": v.get("hellinger_max"),
               "target": v.get("target"), "validated": self.meta.get("validated", self.meta.get("source") == "bundled"),
               "box": {k: [float(a), float(b)] for k, (a, b) in self.box.items()},
               "times": [float(t) for t in self.times]}
        if v.get("anchor_hellinger_max") is not None:
            out["own_parameters_hellinger_max"] = v["anchor_hellinger_max"]
        return out

    # ------------------------------------------------------------------ prompts
    def prompt_features(self, times, init, params, stacklevel: int = 4) -> torch.Tensor:
        """The network input for parameter values ``params`` and initial counts ``init`` (SBML id
        -> value; None or missing ids take the network's) at each of ``times``: (len(times),
        n_prompt, n_features). Warns ExtrapolationWarning outside the training box."""
        theta, x0 = self.space.resolve(self.network, params, init)
        t = np.atleast_1d(np.asarray(times, dtype=float))
        self.space.check(theta, x0, t, stacklevel=stacklevel)
        f = self.space.features(np.repeat(theta[None], len(t), 0), np.repeat(x0[None], len(t), 0), t)
        return torch.as_tensor(f)

    # ------------------------------------------------------------------ solver API
    @torch.no_grad()
    @scoped_threads(lambda *a, **k: SMALL_WORK)  # batches of at most SMALL_WORK states: one thread
    def log_prob(self, states, time: float, init: Mapping[str, float] | None = None, **params) -> np.ndarray:
        """Exact log p(state | prompt) under the MET for each row of ``states`` (n, n_species);
        -inf (with a VocabularyOverflowWarning) for counts outside the model's vocabulary."""
        x = np.atleast_2d(np.asarray(states))
        if x.shape[1] != len(self.species):
            raise InvalidArgumentError(f"states need {len(self.species)} columns ({', '.join(self.species)})")
        f = self.prompt_features([time], init, params)
        out = np.full(len(x), -np.inf)
        inside = check_vocab(x, self.config.vocab, self.species)
        xi = torch.as_tensor(x[inside].astype(np.int64))
        for a in range(0, len(xi), 65536):
            xb = xi[a : a + 65536]
            out[np.flatnonzero(inside)[a : a + 65536]] = masked_log_prob(
                self.net, f.expand(len(xb), -1, -1), xb, self._mask(init)).double().numpy()
        return out

    @scoped_threads(lambda self, n, *a, **k: int(n))
    def sample(self, n: int, time: float, seed: int | None = None, init: Mapping[str, float] | None = None,
               **params) -> np.ndarray:
        """``n`` states (n, n_species) drawn exactly from the MET at one prompt; same seed, same states."""
        if int(n) < 1:
            raise InvalidArgumentError(f"n must be >= 1, got {n}")
        f = self.prompt_features([time], init, params)
        g = torch.Generator().manual_seed(int(seed) if seed is not None else int(np.random.SeedSequence().entropy % 2**63))
        return ancestral_sample(self.net, f, int(n), g, self._mask(init))

    @scoped_threads(lambda *a, **k: SMALL_WORK)  # batches of at most SMALL_WORK states: one thread
    def marginal(self, species: str, time: float, init: Mapping[str, float] | None = None,
                 n_samples: int = 100_000, seed: int = 0, **params) -> pd.Series:
        """P(species = count) at one prompt: exact by enumerating the preceding species when that
        needs fewer than 10^6 prefixes, else from ``n_samples`` samples (``.attrs['method']`` says which)."""
        s = self.network.species_index(species)
        f = self.prompt_features([time], init, params)
        joint = enumerate_joint(self.net, f, s + 1, max_prefixes=MAX_PREFIXES, mask=self._mask(init))
        if joint is not None:
            states, p = joint
            m = np.bincount(states[:, s], weights=p, minlength=self.config.vocab[s])
            method = "enumerated"
        else:
            g = torch.Generator().manual_seed(int(seed))
            x = ancestral_sample(self.net, f, int(n_samples), g, self._mask(init))
            m = np.bincount(x[:, s], minlength=self.config.vocab[s]) / len(x)
            method = f"sampled (n={int(n_samples)})"
        out = pd.Series(m, index=pd.RangeIndex(len(m), name="count"), name="probability")
        out.attrs.update(self.accuracy)
        out.attrs["method"] = method
        return out

    def marginals_all(self, time: float, init=None, **params) -> list[np.ndarray]:
        """Exact marginal arrays of every species at one prompt (enumeration; for validation)."""
        f = self.prompt_features([time], init, params, stacklevel=5)
        return marginals_of(self.net, f, mask=self._mask(init))

    @torch.no_grad()
    @scoped_threads(lambda *a, **k: SMALL_WORK)  # batches of at most SMALL_WORK states: one thread
    def solve(self, times, init: Mapping[str, float] | None = None, prune: float = 1e-12,
              n_samples: int = 100_000, seed: int = 0, **params) -> Distribution:
        """Joint distribution at each time as a :class:`~sbml_met.Distribution` (method "met").

        Enumerated exactly (states of probability <= ``prune`` dropped; the dropped mass is
        ``truncation_error``) when that needs fewer than 10^6 prefixes, else sampled."""
        grid = check_times(times)
        feats = self.prompt_features(grid, init, params)
        states, probs, lost, how = [], [], [], []
        for j in range(len(grid)):
            f = feats[j : j + 1]
            joint = enumerate_joint(self.net, f, len(self.species), MAX_PREFIXES, prune=prune, mask=self._mask(init))
            if joint is None:
                g = torch.Generator().manual_seed(int(seed) + j)
                x = ancestral_sample(self.net, f, int(n_samples), g, self._mask(init))
                uniq, cnt = np.unique(x, axis=0, return_counts=True)
                joint = (uniq, cnt / cnt.sum())
                how.append("sampled")
                lost.append(0.0)
            else:
                how.append("enumerated")
                lost.append(max(0.0, 1.0 - float(joint[1].sum())))
            states.append(joint[0].astype(np.int64))
            probs.append(joint[1])
        theta, x0 = self.space.resolve(self.network, params, init)
        meta = {"prompt": dict(zip(self.space.free, theta.tolist())), "init": dict(zip(self.species, x0.tolist())),
                "how": how, "model": self.network.name, **self.accuracy}
        return Distribution(self.species, grid, tuple(states), tuple(probs), method="met",
                            truncation_error=np.asarray(lost), metadata=meta)

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict:
        weights = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
        return {"weights": weights, **_plain(self._state_without_weights())}

    def _state_without_weights(self) -> dict:
        return {
            "format": FORMAT,
            "version": VERSION,
            "config": self.config.to_dict(),
            "space": self.space.to_dict(),
            "box": {k: list(v) for k, v in self.box.items()},
            "times": list(self.times),
            "sbml": self.network.to_sbml(),
            "fingerprint": self.network.fingerprint(),
            "model": self.network.name,
            "species": list(self.species),
            "parameters": {k: float(v) for k, v in self.network.parameters.items()},
            "log": self.log,
            "validation": self.validation,
            "meta": self.meta,
        }

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Write the checkpoint atomically (temporary file + rename); never overwrites unless asked."""
        data = self.state()
        out = atomic_write(path, lambda p: torch.save(data, p), overwrite=overwrite)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(out, 0o666 & ~umask)  # the temporary file was private; give it normal permissions
        return out


def _plain(x):
    """Plain Python containers and numbers (so checkpoints load with ``weights_only=True``)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return _plain(x.tolist())
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return str(x)


@torch.no_grad()
def marginals_of(net: METNet, f: torch.Tensor, n_samples: int = 4000, seed: int = 0, mask=None) -> list[np.ndarray]:
    """Marginals of every species for one prompt: exact by enumeration of prefixes where that
    needs fewer than MAX_PREFIXES of them, else estimated from ``n_samples`` ancestral samples
    (many species, e.g. a 15-species cascade). ``mask``: a ConservationMask, or None."""
    S = net.config.n_species
    joint = enumerate_joint(net, f, S, max_prefixes=MAX_PREFIXES, prune=1e-14, mask=mask)
    if joint is None:
        x = ancestral_sample(net, f, int(n_samples), torch.Generator().manual_seed(int(seed)), mask)
        return [np.bincount(x[:, s], minlength=net.config.vocab[s]) / len(x) for s in range(S)]
    states, p = joint
    return [np.bincount(states[:, s], weights=p, minlength=net.config.vocab[s]) for s in range(S)]


def load(path: str | os.PathLike | io.BytesIO, network=None) -> MET:
    """Load a checkpoint. With ``network``, its fingerprint must match the trained one
    (CheckpointMismatchError otherwise); without, the network is rebuilt from the stored SBML."""
    from ..sbml import load_sbml

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InvalidArgumentError(f"no checkpoint file {path}") from None
    except Exception as e:  # not a torch file, or corrupted
        raise InvalidArgumentError(f"{path} is not a readable MET checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InvalidArgumentError(f"{path} is not a MET checkpoint")
    if network is not None:
        fp = network.fingerprint()
        if fp != data["fingerprint"]:
            raise CheckpointMismatchError(
                f"checkpoint {path} was trained on model '{data['model']}' (fingerprint {data['fingerprint']}, "
                f"species {', '.join(data['species'])}); the given network '{network.name}' has fingerprint "
                f"{fp} (species {', '.join(network.species)}): species, reactions or rate laws differ")
        fixed = {k: v for k, v in data["parameters"].items()
                 if k not in data["space"]["free"] and k in network.parameters}
        differ = [k for k, v in fixed.items() if float(network.parameters[k]) != v]
        if differ:
            warnings.warn("the MET was trained with fixed " + ", ".join(
                f"{k}={fixed[k]:g} (given network: {network.parameters[k]:g})" for k in differ)
                + "; it answers for the trained values", UserWarning, stacklevel=user_stacklevel())
            network = network.with_parameters({k: fixed[k] for k in differ})
    else:
        network = load_sbml(data["sbml"])
    config = METConfig.from_dict(data["config"])
    net = METNet(config)
    net.load_state_dict(data["weights"])
    return MET(net, PromptSpace.from_dict(data["space"]), network, data.get("log"), data.get("validation"),
               data.get("meta"))


def pretrained_names() -> list[str]:
    """Names of the bundled pretrained METs."""
    folder = Path(str(resources.files("sbml_met.met"))) / "pretrained"
    return sorted(p.stem for p in folder.glob("*.met"))


def pretrained(name: str) -> MET:
    """A bundled, pretrained MET: ``"toggle_switch"`` or ``"autoregulation"``."""
    folder = Path(str(resources.files("sbml_met.met"))) / "pretrained"
    path = folder / f"{name}.met"
    if not path.is_file():
        raise UnknownIdError(f"no pretrained MET '{name}'; bundled: {', '.join(pretrained_names()) or 'none'}")
    return load(path)


__all__ = ["MET", "load", "pretrained", "pretrained_names", "marginals_of"]
