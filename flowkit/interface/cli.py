"""The ``flowkit`` command line: argument parsing only; the work lives in ``flowkit``.

Every value printed (a path, a recipe name, a message) goes through ``escape``: rich never reads a user's
``[bold]`` or ``[/x]`` as markup, so it is shown as it is and cannot raise."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(add_completion=True, no_args_is_help=True, help="Flow matching: train, distill, compare.")
out = Console()
err = Console(stderr=True)
_show_warning = warnings.showwarning


def _fail(message: str, code: int) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _fail_on_name(exc: OSError) -> None:
    """A file name the file system cannot hold is a usage error (exit 2); any other OSError keeps its traceback."""
    from flowkit.errors import name_too_long

    error = name_too_long(exc)
    if error is None:
        raise exc
    _fail(str(error), 2)


def _schema_epilog() -> str:
    """Every key of the typed schema with its type, default and range (``flowkit.config.schema.schema_rows``)."""
    from flowkit.config.schema import schema_rows

    lines = [f"[bold]{key}[/]  {kind} = {escape(default)}" + (f"  ({escape(allowed)})" if allowed else "")
             for key, kind, default, allowed in schema_rows()]
    return "Keys (key=value; a recipe sets its own defaults, --print-config shows them):\n\n" + "\n\n".join(lines)


@app.command(context_settings={"allow_extra_args": False}, epilog=_schema_epilog())
def train(
    overrides: Optional[List[str]] = typer.Argument(
        None, help="recipe=NAME (default rectified), resume=RUN_DIR, and key=value overrides, e.g. trainer.max_steps=2000"
    ),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config as YAML and exit."),
) -> None:
    """Train a recipe and print each eval sampler's metric (W2, FD, ...) against its floor."""
    import logging

    from flowkit.config.schema import validate
    from flowkit.errors import ConfigError, Interrupted, TrainingError
    from flowkit.config.resolve import check_names, resolve_config

    try:  # the config is checked before Lightning is imported: a usage error answers at once
        cfg, resume = resolve_config(overrides or [])
        validate(cfg)
        check_names(cfg)
    except ConfigError as exc:
        _fail(str(exc), 2)
    except OSError as exc:
        _fail_on_name(exc)
    if print_config:
        from omegaconf import OmegaConf

        out.print(OmegaConf.to_yaml(cfg), end="", highlight=False, markup=False)
        return

    from flowkit.training.loop import train as run_training

    # Lightning sets its logger to INFO when imported; its banner (GPU available, tips) is noise here.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    try:
        result = run_training(cfg, resume)
    except ConfigError as exc:
        _fail(str(exc), 2)
    except Interrupted as exc:
        err.print(str(exc), highlight=False, soft_wrap=True, markup=False)
        raise typer.Exit(exc.code)
    except TrainingError as exc:
        _fail(str(exc), 1)
    except OSError as exc:
        _fail_on_name(exc)
    for done in result.rounds if len(result.rounds) > 1 else [result]:
        _print_summary(done)


def _print_summary(result) -> None:
    s = result.summary
    if not s:
        return
    if "classifier_accuracy" in s:
        accuracy = "   ".join(f"{escape(str(k))}: [bold]{v:.1%}[/]" for k, v in s["classifier_accuracy"].items())
        out.print(f"classifier of noisy data after {result.steps} steps; accuracy along the path: {accuracy}")
        run = escape(str(s["run_dir"]))
        out.print(f"run directory: [bold]{run}[/]  (guides sampling: classifier={run})")
        return
    metric = s["metric"]
    table = Table(title=f"samplers after {result.steps} steps ({result.seconds:.0f} s of training)")
    for column in ("solver", "NFE", metric, f"{metric} / floor"):
        table.add_column(escape(column), justify="right" if column != "solver" else "left")
    for row in s["rows"]:
        ratio = row["value"] / s["floor"] if s["floor"] else float("nan")
        table.add_row(escape(row["solver"]), str(row["nfe"]), f"{row['value']:.3f} ± {row['std']:.3f}", f"{ratio:.2f}")
    out.print(table)
    main = s["rows"][0]
    out.print(
        f"{escape(metric)} ({escape(main['solver'])}): [bold]{main['value']:.3f}[/] ± {main['std']:.3f}   "
        f"floor (real data against the reference): [bold]{s['floor']:.3f}[/] ± {s['floor_std']:.3f}   "
        f"(means over eval.repeats draws of eval.n points)"
    )
    if s["straightness"] is not None:
        out.print(f"straightness (Liu et al. 2022, along {escape(s.get('straightness_along', 'dopri5'))} paths): "
                  f"{s['straightness']:.4f}")
    if s.get("label_accuracy") is not None:
        out.print(f"samples in the class they were asked for: {s['label_accuracy']:.1%}")
    if result.skipped:
        out.print(f"[yellow]skipped {result.skipped} batches with a non-finite loss or gradient[/]")
    for note in result.notes:
        out.print(f"[yellow]note: {escape(note)}[/]", highlight=False)
    out.print(f"run directory: [bold]{escape(str(s['run_dir']))}[/]  (last.ckpt, samples.png, summary.json, "
              "logs/metrics.csv)")


def _run(command, tokens: list[str]):
    from flowkit.errors import ConfigError, TrainingError

    try:
        return command(tokens or [])
    except ConfigError as exc:
        _fail(str(exc), 2)
    except TrainingError as exc:  # e.g. an output the disk refuses
        _fail(str(exc), 1)
    except OSError as exc:
        _fail_on_name(exc)


TOKENS = typer.Argument(None, help="key=value arguments, e.g. ckpt=runs/rectified-... n=2000 device=cuda")


@app.command()
def sample(tokens: Optional[List[str]] = TOKENS) -> None:
    """Draw samples from a checkpoint: ckpt=RUN n=10000 solver=dopri5 out=samples.pt (.npy, .png)."""
    from flowkit.interface.commands import sample as run

    r = _run(run, tokens)
    out.print(f"wrote {r['n']} samples to [bold]{escape(str(r['out']))}[/] ({escape(r['solver'])}, NFE {r['nfe']}, {r['seconds']:.2f} s)")
    if r.get("label_accuracy") is not None:
        out.print(f"samples in the class they were asked for (the target's own classifier): {r['label_accuracy']:.1%}")


@app.command("eval")
def evaluate(tokens: Optional[List[str]] = TOKENS) -> None:
    """Evaluate a checkpoint: the target's metric (W2 for arrays and toys, FD for digits), its further metrics, straightness and NLL."""
    from flowkit.interface.commands import evaluate as run

    r = _run(run, tokens)
    table = Table(title=f"eval of {escape(str(r['ckpt']))}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in r.items():
        if key not in ("ckpt",):
            table.add_row(escape(key), f"{value:.4g}" if isinstance(value, float) else escape(str(value)))
    out.print(table)


@app.command()
def invert(tokens: Optional[List[str]] = TOKENS) -> None:
    """Map data back to source points with a deterministic sampler run backwards: ckpt=RUN in=x.npy out=z.npy solver=dopri5."""
    from flowkit.interface.commands import invert as run

    r = _run(run, tokens)
    grid = "adaptive steps" if r["grid"] is None else f"grid {r['grid']}"
    out.print(f"wrote {r['n']} source points to [bold]{escape(str(r['out']))}[/] ({escape(r['solver'])}, "
              f"{escape(grid)}, NFE {r['nfe']}, "
              f"{r['seconds']:.2f} s); round trip (generated again, NFE {r['nfe_generate']}): RMS error "
              f"{r['round_trip_rms']:.3g}, max {r['round_trip_max']:.3g}, data RMS {r['data_rms']:.3g}")


@app.command()
def compare(tokens: Optional[List[str]] = TOKENS) -> None:
    """Samplers and models side by side on the same noise: ckpt=A[,B] solvers=euler:1,rk4:4,dopri5."""
    from flowkit.interface.commands import compare as run

    r = _run(run, tokens)
    floor = "" if r["floor"] is None else f"; floor {r['floor']:.4f} ± {r['floor_std']:.4f}"
    table = Table(title=f"mean ± std over {r['repeats']} draws of n={r['n']} on {escape(str(r['device']))}{floor}; "
                        f"error = RMS distance to dopri5 at tol {r['reference_tol']:g}")
    for column in ("model", "solver", "grid", "NFE", r["rows"][0]["metric"] if r["rows"] else "quality", "error",
                   "time (s)"):
        table.add_column(escape(column), justify="left" if column in ("model", "solver", "grid") else "right")
    for row in r["rows"]:
        value = "-" if row["value"] is None else f"{row['value']:.4f} ± {row['std']:.4f}"
        table.add_row(escape(row["name"]), escape(row["solver"]), escape(row["grid"] or "-"), str(row["nfe"]), value,
                      f"{row['error']:.2e}", f"{row['seconds']:.3f}")
    out.print(table)
    if r.get("note"):
        out.print(f"[yellow]{escape(r['note'])}[/]", soft_wrap=True)
    for line in r["skipped"]:
        out.print(f"[yellow]skipped {escape(line)}[/]")
    out.print("wrote " + ", ".join(r["files"]), markup=False)


@app.command()
def encode(tokens: Optional[List[str]] = typer.Argument(
        None, help="data.target=folder:IMGS data.resolution=32 data.encoder=autoencoder-kl:DIR out=SHARDS "
                   "(shard_mb, reference, dtype, seed, device)")) -> None:
    """Write a dataset once into shards, as latent codes with data.encoder=NAME[:ARG]: resumable, streamed by train."""
    from flowkit.interface.commands import encode as run

    r = _run(run, tokens)
    what = f"codes of {escape(str(r['encoder']))}" if r["encoder"] else "rows"
    out.print(f"wrote {r['count']:,} {what} ({r['views']} view{'s' if r['views'] > 1 else ''} each, shape "
              f"{tuple(r['shape'])}, {r['dtype']}; data {tuple(r['data_shape'])}) into {r['shards']} shards in "
              f"[bold]{escape(str(r['out']))}[/]; train on them with data.target=shards:{escape(str(r['out']))}",
              highlight=False)


@app.command("list")
def list_registered() -> None:
    """Show the registered paths, couplings, time samplers, methods, samplers, grids, models, datasets and recipes."""
    from itertools import groupby

    from flowkit.interface.api import catalogue

    for kind, group in groupby(catalogue(), key=lambda entry: entry.kind):
        entries = list(group)
        where = f"entry point group {entries[0].group}" if entries[0].group else str(Path(entries[0].source).parent)
        table = Table(title=f"{kind}s  ({where})", title_justify="left")
        table.add_column("name", style="bold")
        if entries[0].group:
            table.add_column("source")
        table.add_column("summary")
        for entry in entries:
            table.add_row(escape(entry.name), *([escape(entry.source)] if entry.group else []), escape(entry.summary))
        out.print(table)


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """flowkit's own warnings (a plugin skipped, ...) as one line; any other as Python shows it."""
    if str(message).startswith("flowkit: "):
        err.print(f"[yellow]warning:[/] {escape(str(message).removeprefix('flowkit: '))}", highlight=False,
                  soft_wrap=True)
    else:
        _show_warning(message, category, filename, lineno, file, line)


def main() -> None:
    warnings.showwarning = _warning_line
    app()


if __name__ == "__main__":
    sys.exit(main())
