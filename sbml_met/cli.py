"""The ``sbml-met`` command line: thin wrappers over the Python API, one subcommand each.

Every subcommand that writes a table takes ``--out`` and writes CSV or Parquet by its extension,
atomically, and refuses to overwrite an existing file unless ``--force`` is given. Exit codes:
0 success, 1 a check failed (dsmts, validate), 2 bad input (any SbmlMetError).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import InvalidArgumentError, SbmlMetError


def load_model(source, **kwargs):
    """:func:`sbml_met.models.load_model`, imported on first use (``sbml-met --help`` stays fast)."""
    from .models import load_model as load

    return load(source, **kwargs)

SUBCOMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {}


def subcommand(fn):
    """Register a function that adds one subparser (keeps this module a flat list of commands)."""
    SUBCOMMANDS[fn.__name__.removeprefix("add_")] = fn
    return fn


# ------------------------------------------------------------------------------------------ helpers
def parse_times(text: str) -> np.ndarray:
    """'0:40:41' (start:stop:points, inclusive), '1,3,40' (list) or '10' (one time)."""
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3 or parts[2] < 1 or parts[2] != int(parts[2]):
                raise ValueError
            return np.linspace(parts[0], parts[1], int(parts[2]))
        return np.array([float(p) for p in text.split(",") if p.strip()], dtype=float)
    except ValueError:
        raise InvalidArgumentError(
            f"bad --times {text!r}: use start:stop:points (e.g. 0:40:41), a list (1,3,40) or one number"
        ) from None


def parse_assignments(items: Sequence[str] | None) -> dict[str, float]:
    """['sx=40', 'k=1e-3'] -> {'sx': 40.0, 'k': 0.001}."""
    out: dict[str, float] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        try:
            if not sep or not key:
                raise ValueError
            out[key.strip()] = float(value)
        except ValueError:
            raise InvalidArgumentError(f"bad assignment {item!r}: use ID=VALUE, e.g. sx=40") from None
    return out


def write_output(df, out: str | None, force: bool) -> None:
    """Write a table to --out (CSV/Parquet by extension), or print it when no --out is given."""
    from .io import write_table

    if out is None:
        import pandas as pd

        with pd.option_context("display.max_rows", 60, "display.width", 160):
            print(df)
        return
    path = write_table(df, out, overwrite=force)
    print(f"wrote {len(df)} rows to {path}", file=sys.stderr)


VOLUME_HELP = ("molecules per unit of substance, converting a model in concentrations to counts; auto: "
               "the model's own counts where they are whole numbers of at most 10^6 molecules, else a "
               "suggested volume (stated in the output)")


def _add_volume(p: argparse.ArgumentParser) -> None:
    p.add_argument("--volume", default=None, metavar="V|auto", help=VOLUME_HELP)
    p.add_argument("--continuous", default=None, metavar="ID[,ID...]",
                   help="species integrated as an ODE instead of counted (abundant species whose noise does "
                        "not matter): the reactions that change only them become their rate of change, the "
                        "rest is simulated exactly (piecewise-deterministic)")


def load_cli_model(args):
    """The MODEL argument loaded with --volume and --continuous; a note on stderr says how auto chose."""
    net = load_model(args.model, volume=getattr(args, "volume", None), continuous=getattr(args, "continuous", ""))
    for note in net.notes:
        if note.startswith("--volume"):
            print(f"sbml-met {args.command}: {note}", file=sys.stderr)
    return net


def check_out_first(args) -> None:
    """Refuse a table --out that exists (without --force) or has another extension than .csv or
    .parquet before any work is done (run's --out is a folder, train's a checkpoint)."""
    out = getattr(args, "out", None)
    if not out or args.command == "run":
        return
    if args.command != "train" and Path(out).suffix.lower() not in (".csv", ".parquet"):
        raise InvalidArgumentError(f"cannot write {out}: use a .csv or .parquet file name")
    if Path(out).exists() and not getattr(args, "force", False):
        raise FileExistsError(f"{out} exists; pass --force to replace it")


def _add_variants(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", action="append", metavar="ID=VALUE", help="parameter value (repeatable)")
    p.add_argument("--init", action="append", metavar="ID=COUNT", help="initial count (repeatable)")


def model_with_variants(args):
    """The MODEL argument loaded, with --set parameter values and --init counts applied."""
    net = load_cli_model(args)
    if args.set:
        net = net.with_parameters(parse_assignments(args.set))
    if args.init:
        net = net.with_initial_state(parse_assignments(args.init))
    return net


def _model_parser(sub, name: str, help_: str) -> argparse.ArgumentParser:
    """A subcommand taking a model, --times and the --set/--init variants."""
    p = sub.add_parser(name, help=help_)
    p.add_argument("model")
    p.add_argument("--times", required=True, help="start:stop:points, or a list 1,3,40")
    _add_variants(p)
    _add_volume(p)
    return p


def _add_table_out(p: argparse.ArgumentParser, tables: tuple[str, ...], default_help: str, func) -> None:
    """--table (the first choice by default), --out/--force, and the command's function."""
    p.add_argument("--table", choices=tables, default=tables[0], help=f"what to write (default: {default_help})")
    _add_out(p)
    p.set_defaults(func=func)


def _add_out(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--out", required=required, help="output table: .csv or .parquet")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")


# ------------------------------------------------------------------------------------------ commands
@subcommand
def add_info(sub):
    p = sub.add_parser("info", help="describe a model: species, reactions, rate laws, parameters")
    p.add_argument("model", help="bundled name, SBML/Antimony path, or BioModels id")
    _add_volume(p)
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    import pandas as pd

    net = load_cli_model(args)
    print(net)
    summary = net.summary()
    with pd.option_context("display.max_colwidth", 80, "display.width", 160):
        print()
        print(net.species_frame().to_string(index=False))
        print()
        print(summary.to_string(index=False))
    negative = summary[~(summary["initial_propensity"] >= 0)]
    if len(negative):
        listed = ", ".join(f"{r} ({a:g})" for r, a in zip(negative["reaction"], negative["initial_propensity"]))
        print(f"sbml-met info: error: negative or undefined propensity at the initial state: {listed}; a "
              "propensity is a rate of firing and must be >= 0: check the signs of these rate laws and of "
              "their parameters",
              file=sys.stderr)
        return 2
    return 0


@subcommand
def add_simulate(sub):
    p = _model_parser(sub, "simulate", "exact SSA trajectories on a time grid")
    p.add_argument("--n", type=int, default=1000, help="number of trajectories")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--method", choices=("direct", "tau-leap"), default="direct",
                   help="direct (exact SSA, default) or tau-leap (approximate, for many molecules)")
    _add_table_out(p, ("trajectories", "moments", "marginals"), "every trajectory, long format", cmd_simulate)


def announce_cost(net, times, n: int, command: str) -> float:
    """Print (stderr) the expected events per trajectory and the expected seconds of ``n`` exact
    SSA trajectories when over 2 s, so that no long call starts in silence; the seconds."""
    from .cost import describe_seconds, estimate_cost, kernel_kind
    from .parallel import available_workers

    if len(times) == 0 or float(np.max(times)) <= 0:
        return 0.0
    cost = estimate_cost(net, float(np.max(times)))
    seconds = cost.ssa_seconds(n, available_workers(), kernel_kind(net))
    if np.isfinite(seconds) and seconds > 2:
        advice = ("; --method tau-leap or fewer molecules (--volume) is faster" if seconds > 600 else "")
        print(f"sbml-met {command}: expected {cost.events:,.3g} reaction events per trajectory; {n:,} exact SSA "
              f"{'trajectory' if n == 1 else 'trajectories'}: {describe_seconds(seconds)} (estimate; Ctrl-C "
              f"stops{advice})", file=sys.stderr, flush=True)
    return seconds


def cmd_simulate(args) -> int:
    from .ssa import estimated_progress, simulate

    net = model_with_variants(args)
    times = parse_times(args.times)
    if args.n < 1:
        raise InvalidArgumentError(f"--n must be >= 1, got {args.n}")
    seconds = announce_cost(net, times, args.n, "simulate") if args.method == "direct" else 0.0
    terminal = sys.stderr.isatty()
    with estimated_progress(seconds, terminal and args.n < 100 and seconds > 3):
        result = simulate(net, times, n=args.n, seed=args.seed, method=args.method,
                          progress=terminal and (args.n >= 100 or args.method != "direct"))
    # printing every trajectory helps nobody: without --out the moments are shown instead
    kind = "moments" if args.out is None and args.table == "trajectories" else args.table
    table = {"trajectories": result.to_frame, "moments": result.moments,
             "marginals": result.marginals}[kind]()
    write_output(table, args.out, args.force)
    return 0


@subcommand
def add_dsmts(sub):
    p = sub.add_parser("dsmts", help="run and score the SBML discrete stochastic test suite")
    p.add_argument("directory", help="folder of case folders NNNNN/ (layout of the DSMTS)")
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--levels", default="l3v1,l2v4", help="which SBML files to run (default both)")
    p.add_argument("--cases", default=None, help="comma-separated case numbers (default: all)")
    _add_out(p)
    p.set_defaults(func=cmd_dsmts)


def cmd_dsmts(args) -> int:
    import pandas as pd

    from .dsmts import LEVELS, case_folders, run_case

    levels = [lv.strip() for lv in args.levels.split(",") if lv.strip()]
    for lv in levels:
        if lv not in LEVELS:
            raise InvalidArgumentError(f"unknown level {lv!r}; choose from {', '.join(LEVELS)}")
    folders = case_folders(args.directory)
    if args.cases:
        wanted = {c.strip().zfill(5) for c in args.cases.split(",")}
        folders = [f for f in folders if f.name in wanted]
    passed = failed = 0
    tables = []
    for folder in folders:
        for lv in levels:
            result, table = run_case(folder, n=args.n, seed=args.seed, level=lv)
            tables.append(table)
            print(result.line(), flush=True)
            passed += result.passed
            failed += not result.passed
    if args.out:
        write_output(pd.concat(tables, ignore_index=True), args.out, args.force)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


@subcommand
def add_validate(sub):
    p = sub.add_parser("validate", help="check an SSA or FSP answer against libroadrunner gillespie runs")
    p.add_argument("model")
    p.add_argument("--method", choices=("ssa", "fsp"), default="ssa", help="engine to validate")
    p.add_argument("--n", type=int, default=10_000,
                   help="trajectories of the reference (and of the SSA answer)")
    p.add_argument("--times", required=True, help="start:stop:points, or a list 1,3,40")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--processes", type=int, default=None, help="roadrunner worker processes (default: all cores)")
    _add_volume(p)
    _add_out(p)
    p.set_defaults(func=cmd_validate)


def cmd_validate(args) -> int:
    from .validation import validate

    net = load_cli_model(args)
    times = parse_times(args.times)
    if args.n < 2:
        raise InvalidArgumentError(f"--n must be at least 2, got {args.n}")
    if args.method == "ssa":
        from .ssa import simulate

        result = simulate(net, times, n=args.n, seed=args.seed)
    else:
        from .fsp import solve_fsp

        result = solve_fsp(net, times)
    report = validate(net, result, n_reference=args.n, seed=args.seed + 1, processes=args.processes)
    print(report.summary())
    if args.out:
        write_output(report.to_frame(), args.out, args.force)
    elif not report.ok:
        import pandas as pd

        with pd.option_context("display.max_rows", 60, "display.width", 160):
            print(report.failures())
    return 0 if report.ok else 1


@subcommand
def add_fsp(sub):
    p = _model_parser(sub, "fsp", "exact CME distribution by finite state projection")
    p.add_argument("--tol", type=float, default=1e-6, help="bound on the probability lost (default 1e-6)")
    p.add_argument("--max-states", type=int, default=2_000_000)
    _add_table_out(p, ("marginals", "moments"), "marginals time, species, count, probability", cmd_fsp)


def cmd_fsp(args) -> int:
    from .fsp import solve_fsp

    net = model_with_variants(args)
    dist = solve_fsp(net, parse_times(args.times), tol=args.tol, max_states=args.max_states)
    table = dist.to_frame() if args.table == "marginals" else dist.moments()
    print(f"fsp: {dist.metadata.get('n_states')} states, probability lost by the last time "
          f"{float(dist.truncation_error[-1]):.3g}", file=sys.stderr)
    write_output(table, args.out, args.force)
    return 0


@subcommand
def add_train(sub):
    p = sub.add_parser("train", help="train a Master Equation Transformer over a parameter box")
    p.add_argument("model")
    p.add_argument("--box", action="append", required=True, metavar="ID=LOW:HIGH",
                   help="free parameter and its range (repeatable), e.g. su=1e-8:2")
    p.add_argument("--init-box", action="append", metavar="ID=LOW:HIGH", help="initial-count range (repeatable)")
    p.add_argument("--times", required=True, help="t_min:t_max, e.g. 0:10")
    p.add_argument("--teacher", default="fsp", help="fsp (exact distillation) or ssa (exact samples)")
    p.add_argument("--minutes", type=float, default=15.0, help="time budget (default 15)")
    p.add_argument("--steps", type=int, default=None, help="fixed number of steps (reproducible)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--symmetry", action="append", metavar="ID=ID",
                   help="teacher fsp: a pair of species or free parameters the network is symmetric "
                        "under swapping (repeatable, e.g. --symmetry sx=sy --symmetry Px=Py --symmetry Gux=Guy)")
    p.add_argument("--threads", type=int, default=1, help="torch threads for training (default 1)")
    p.add_argument("--device", default=None, help="cuda or cpu (default: CUDA when available, else CPU)")
    p.add_argument("--nproc", type=int, default=1,
                   help="data-parallel training processes on this machine (torch.distributed: gloo on "
                        "CPU, NCCL on CUDA); under torchrun, leave it out")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler (tcp://HOST:PORT) whose workers compute the teacher data")
    p.add_argument("--out", required=True, help="checkpoint file to write (.met)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    _add_volume(p)
    p.set_defaults(func=cmd_train)


def _parse_ranges(items, what: str) -> dict[str, tuple[float, float]]:
    out = {}
    for item in items or ():
        key, sep, rng = item.partition("=")
        lo, sep2, hi = rng.partition(":")
        try:
            if not (sep and sep2 and key):
                raise ValueError
            out[key.strip()] = (float(lo), float(hi))
        except ValueError:
            raise InvalidArgumentError(f"bad {what} {item!r}: use ID=LOW:HIGH, e.g. su=1e-8:2") from None
    return out


def cmd_train(args) -> int:
    from pathlib import Path as _Path

    from .met.distributed import init_from_env, train_distributed, world

    net = load_cli_model(args)
    if _Path(args.out).exists() and not args.force:
        raise FileExistsError(f"{args.out} exists; pass --force to replace it")
    lo, sep, hi = args.times.partition(":")
    try:
        times = (float(lo), float(hi))
    except ValueError:
        raise InvalidArgumentError(f"bad --times {args.times!r} for train: use t_min:t_max, e.g. 0:10") from None
    options = {}
    if args.symmetry:
        if args.teacher != "fsp":
            raise InvalidArgumentError("--symmetry is an option of --teacher fsp")
        pairs = [item.partition("=") for item in args.symmetry]
        if any(not (a and sep and b) for a, sep, b in pairs):
            raise InvalidArgumentError(f"bad --symmetry {args.symmetry}: use ID=ID, e.g. --symmetry Px=Py")
        options["symmetry"] = {a.strip(): b.strip() for a, _, b in pairs}
    if args.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InvalidArgumentError("--nproc starts its own processes; under torchrun, leave it out")
    if args.scheduler and (args.nproc > 1 or int(os.environ.get("WORLD_SIZE", "1")) > 1):
        raise InvalidArgumentError("--scheduler computes the teacher data for one training process; with "
                                   "--nproc or torchrun every rank computes its own: drop one of the two")
    init_from_env(args.device)  # under torchrun: join its process group
    client = _dask_client(args.scheduler) if args.scheduler else None
    met = train_distributed(net, _parse_ranges(args.box, "--box"), times, nproc=args.nproc, teacher=args.teacher,
                            minutes=args.minutes, seed=args.seed, steps=args.steps,
                            init_box=_parse_ranges(args.init_box, "--init-box") or None,
                            teacher_options=options or None, threads=args.threads, device=args.device,
                            client=client)
    if world()[0] != 0:  # another torchrun rank: rank 0 writes the checkpoint
        return 0
    path = met.save(args.out, overwrite=args.force)
    v = met.validation
    print(f"trained {met} in {met.meta['wall_seconds']:.0f} s ({met.meta['steps']} steps); validation "
          f"Hellinger mean {v['hellinger_mean']:.4f}, max {v['hellinger_max']:.4f}; wrote {path}", file=sys.stderr)
    return 0


@subcommand
def add_solve(sub):
    p = sub.add_parser("solve", help="distributions (or samples) from a trained MET checkpoint")
    p.add_argument("checkpoint", help="a .met file, or the name of a bundled pretrained MET")
    p.add_argument("--times", required=True, help="start:stop:points, or a list 1,3,40")
    p.add_argument("--set", action="append", metavar="ID=VALUE", help="free parameter value (repeatable)")
    p.add_argument("--init", action="append", metavar="ID=COUNT", help="initial count (repeatable)")
    p.add_argument("--samples", type=int, default=None,
                   help="write N sampled states per time (time, sample, species, count) instead of marginals")
    p.add_argument("--seed", type=int, default=0)
    _add_table_out(p, ("marginals", "moments"), "marginals", cmd_solve)


def cmd_solve(args) -> int:
    import pandas as pd

    met = _load_met(args.checkpoint)
    params = parse_assignments(args.set)
    init = parse_assignments(args.init) or None
    times = parse_times(args.times)
    if args.samples is not None:
        if args.samples < 1:
            raise InvalidArgumentError(f"--samples must be >= 1, got {args.samples}")
        frames = []
        for j, t in enumerate(times):
            x = met.sample(args.samples, float(t), seed=args.seed + j, init=init, **params)
            n, S = x.shape
            frames.append(pd.DataFrame({"time": float(t), "sample": np.repeat(np.arange(n), S),
                                        "species": np.tile(np.array(met.species, dtype=object), n),
                                        "count": x.reshape(-1)}))
        table = pd.concat(frames, ignore_index=True)
    else:
        dist = met.solve(times, init=init, **params)
        table = dist.to_frame() if args.table == "marginals" else dist.moments()
        table.insert(len(table.columns), "method", "met")
    write_output(table, args.out, args.force)
    return 0


@subcommand
def add_run(sub):
    p = sub.add_parser("run", help="the main job: SSA, FSP, MET and Tellurium validation, tables and figures")
    p.add_argument("model", help="bundled name, SBML/Antimony path, or BioModels id")
    p.add_argument("--out", default=None, help="output folder (default ./sbml-met-output/MODEL/)")
    p.add_argument("--times", default=None,
                   help="simulation grid start:stop:points (default: the model's SED-ML time course, else "
                        "long enough for its deterministic solution to settle or oscillate three times)")
    p.add_argument("--report-times", default=None, help="times compared and validated, e.g. 1,3,10,40")
    p.add_argument("--n", type=int, default=None,
                   help="SSA trajectories (default 10,000, fewer where they would take over 2 minutes)")
    p.add_argument("--n-reference", type=int, default=None,
                   help="Tellurium reference trajectories (default 10,000, fewer where they would take "
                        "over 2 minutes)")
    p.add_argument("--method", choices=("auto", "direct", "tau-leap"), default="auto",
                   help="SSA method: auto (exact, or tau-leaping where exact SSA would take over 2 "
                        "minutes; said so), direct (always exact), tau-leap")
    _add_volume(p)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--force", action="store_true", help="write into a folder holding other files")
    p.add_argument("--met", default="auto", metavar="auto|off|PATH",
                   help="MET: a bundled or cached one that covers the model, else trained now and cached "
                        "(auto, default); off; or a checkpoint path / bundled name")
    p.add_argument("--met-minutes", type=float, default=8.0, help="cap on the training time of --met auto (default 8, so a run ends within 10 minutes); training stops earlier once the MET reaches its accuracy target")
    p.add_argument("--box", action="append", metavar="ID=LOW:HIGH",
                   help="MET training range of a parameter (repeatable; default: each rate parameter x/÷ 2)")
    p.set_defaults(func=cmd_run)


def _run_command(args) -> str:
    """The ``sbml-met run`` command line these arguments stand for (recorded in report.html)."""
    import shlex

    words = ["sbml-met", "run", args.model]
    for flag in ("out", "times", "report_times", "n", "n_reference", "seed", "method", "volume", "continuous", "met",
                 "met_minutes"):
        if getattr(args, flag) is not None:
            words += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    for item in args.box or ():
        words += ["--box", item]
    words += ["--no-figures"] * bool(args.no_figures) + ["--force"] * bool(args.force)
    return shlex.join(words)


def cmd_run(args) -> int:
    from .run import run

    report = run(args.model, out_dir=args.out,
                 times=parse_times(args.times) if args.times else None,
                 report_times=parse_times(args.report_times) if args.report_times else None,
                 n=args.n, n_reference=args.n_reference, seed=args.seed,
                 figures=not args.no_figures, force=args.force, command=_run_command(args),
                 met=args.met, met_minutes=args.met_minutes, box=_parse_ranges(args.box, "--box") or None,
                 volume=args.volume, method=args.method, continuous=args.continuous)
    print(report.text())
    print(f"open {report.out_dir / 'report.html'} in a browser for the figures and tables")
    return 0 if report.ok else 1


@subcommand
def add_infer(sub):
    p = sub.add_parser("infer", help="posterior of rate parameters from snapshot counts of cells (MCMC)")
    p.add_argument("model", help="bundled name, SBML/Antimony path, or BioModels id")
    p.add_argument("data", help="CSV/Parquet of cells: time + one column per observed species (or species/count)")
    p.add_argument("--free", action="append", required=True, metavar="ID", help="free parameter (repeatable)")
    p.add_argument("--prior", action="append", metavar="ID=LOW:HIGH",
                   help="log-uniform prior range, required for every --free parameter unless --met gives "
                        "it (its training box)")
    p.add_argument("--met", default=None, help="MET checkpoint (.met file or bundled name): fast likelihood; "
                                               "default: exact FSP likelihood")
    p.add_argument("--samples", type=int, default=None, help="thin the posterior draws to N")
    p.add_argument("--steps", type=int, default=1000, help="MCMC steps per walker (half discarded)")
    p.add_argument("--walkers", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    _add_volume(p)
    _add_out(p, required=True)
    p.set_defaults(func=cmd_infer)


def cmd_infer(args) -> int:
    from .infer import posterior
    from .io import read_table

    net = load_cli_model(args)
    if Path(args.out).exists() and not args.force:
        raise FileExistsError(f"{args.out} exists; pass --force to replace it")
    if not Path(args.data).is_file():
        raise InvalidArgumentError(f"no data file {args.data}")
    data = read_table(args.data)
    ranges = _parse_ranges(args.prior, "--prior")
    unknown = sorted(set(ranges) - set(args.free))
    if unknown:
        raise InvalidArgumentError(f"--prior names {', '.join(unknown)}, which are not --free parameters")
    model = net
    if args.met:
        model = _load_met(args.met, net)
        if model.network.fingerprint() != net.fingerprint():
            raise InvalidArgumentError(f"MET '{args.met}' was trained on another model than {args.model}")
    prior = {}
    for pid in args.free:
        if pid in ranges:
            prior[pid] = ranges[pid]
        elif args.met and pid in model.box:
            prior[pid] = model.box[pid]
        else:
            raise InvalidArgumentError(
                f"give a prior range for '{pid}': --prior {pid}=LOW:HIGH (needed for every --free parameter "
                "unless --met names a MET whose training box covers it)")
    res = posterior(model, data, prior, n_steps=args.steps, n_walkers=args.walkers, samples=args.samples,
                    seed=args.seed)
    write_output(res.samples, args.out, args.force)
    print(res.summary().to_string(index=False), file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------------------ main
@subcommand
def add_sweep(sub):
    p = sub.add_parser("sweep", help="one model at many parameter points (a CSV/Parquet table), one long table")
    p.add_argument("model")
    p.add_argument("points", help="table of points: one column per parameter or species id (.csv or .parquet)")
    p.add_argument("--method", choices=("fsp", "ssa", "met"), default="fsp")
    p.add_argument("--times", required=True, help="start:stop:points, or a list 1,3,40")
    p.add_argument("--n", type=int, default=None, help="SSA trajectories per point (--method ssa)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--met", default=None, help="MET checkpoint or bundled name (--method met)")
    p.add_argument("--table", choices=("marginals", "moments"), default="marginals")
    p.add_argument("--tol", type=float, default=1e-6, help="FSP bound on the probability lost")
    p.add_argument("--workers", type=int, default=None, help="local processes (default: all cores)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="Dask scheduler (tcp://HOST:PORT) to run the points on instead")
    _add_variants(p)
    _add_volume(p)
    _add_out(p)
    p.set_defaults(func=cmd_sweep)


def cmd_sweep(args) -> int:
    from .io import read_table
    from .sweeps import sweep

    if args.method == "met" and not args.met:
        raise InvalidArgumentError("--method met needs --met CHECKPOINT: a .met file written by 'sbml-met train' "
                                   "or the name of a bundled MET (toggle_switch, autoregulation)")
    if args.method == "ssa" and (args.n is None or args.n < 1):
        raise InvalidArgumentError("--method ssa needs --n N, the number of trajectories per point (e.g. --n 1000)")
    if args.met and args.method != "met":
        raise InvalidArgumentError(f"--met is used by --method met; drop it or use --method met (got --method "
                                   f"{args.method})")
    net = model_with_variants(args)
    points = read_table(args.points)
    met = _load_met(args.met, net) if args.met else None
    client = _dask_client(args.scheduler) if args.scheduler else None
    table = sweep(net, points, parse_times(args.times), method=args.method, n=args.n, seed=args.seed,
                  met=met, client=client, table=args.table, workers=args.workers, tol=args.tol)
    failed = int(table.loc[table["error"].notna(), "point"].nunique())
    print(f"sweep: {len(points)} points, {failed} failed (see the error column)", file=sys.stderr)
    write_output(table, args.out, args.force)
    return 0


def _load_met(spec: str, network=None):
    """A MET checkpoint file, or the name of a bundled pretrained MET."""
    from . import met

    if not Path(spec).exists() and spec in met.pretrained_names():
        return met.pretrained(spec)
    return met.load(spec, network=network)


def _dask_client(address: str):
    try:
        from distributed import Client
    except ImportError:
        raise InvalidArgumentError("--scheduler needs Dask: pip install 'sbml-met[dask]'") from None
    try:
        return Client(address, timeout=30)
    except OSError as e:
        raise InvalidArgumentError(f"cannot reach the Dask scheduler at {address}: {e}") from None


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="sbml-met",
        description="Exact stochastic simulation, CME solutions and Master Equation Transformers for SBML models.",
    )
    parser.add_argument("--version", action="version", version=f"sbml-met {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in SUBCOMMANDS.values():
        add(sub)
    return parser


def _printable_streams() -> None:
    """Under an ASCII locale (LC_ALL=C without UTF-8 mode) print what cannot be encoded as escapes
    (x/\u00f7 in --help, \u00b1 in notes) rather than fail with UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None) or "ascii"
        if hasattr(stream, "reconfigure") and "utf" not in encoding.lower():
            stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    _printable_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        check_out_first(args)
        return int(args.func(args) or 0)
    except SbmlMetError as e:
        print(f"sbml-met {args.command}: error: {e}", file=sys.stderr)
        return 2
    except FileExistsError as e:
        print(f"sbml-met {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
