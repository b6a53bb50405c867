"""What every bench script shares: running the installed `flowkit` command as a user would."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import torch

from flowkit.config.build import load_run


def torchcfm_layout(name: str) -> dict:
    """A toy dataset as TorchCFM draws it: moons as torchdyn does (evenly spaced angles, ``moons(even=true)``;
    flowkit's default draws each point independently), the others as they are. The benches that compare with
    TorchCFM, or whose README numbers were measured on that layout, train on it."""
    return {"name": name, **({"even": True} if name == "moons" else {})}


def torchcfm_data(task: str) -> list[str]:
    """The ``data.source`` / ``data.target`` overrides of a task ``SOURCE:TARGET`` on TorchCFM's layouts."""
    args = []
    for side, name in zip(("source", "target"), task.split(":")):
        args += [f"data.{side}.{key}={str(value).lower()}" if key != "name" else f"data.{side}={value}"
                 for key, value in torchcfm_layout(name).items()]
    return args


def flowkit(*args: str) -> subprocess.CompletedProcess:
    """Run `flowkit ARGS...` (the console script next to this interpreter); exit with its stderr on failure."""
    exe = Path(sys.executable).parent / "flowkit"
    command = [str(exe) if exe.exists() else shutil.which("flowkit") or "flowkit", *args]
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    if proc.returncode:
        raise SystemExit(f"{' '.join(command)}\n{proc.stderr}")
    return proc


def trained(root: Path, *args: str) -> tuple[Path, dict]:
    """The run under ``root`` (trained now, unless a finished one is there: a bench given its work folder again,
    e.g. after it was stopped, re-uses the runs it had finished; only those with the same arguments, kept in
    ``root/args.json``)."""
    done = [run for run in root.glob("*/summary.json")] if root.is_dir() else []
    record = root / "args.json"
    if done and record.is_file() and json.loads(record.read_text()) == list(args):
        run = done[0].parent
        return run, json.loads((run / "summary.json").read_text())
    if root.is_dir():
        shutil.rmtree(root)  # an unfinished or different run
    flowkit("train", *args, f"run_root={root}", "trainer.enable_progress_bar=false")
    record.write_text(json.dumps(list(args)))
    run = next(p for p in root.iterdir() if p.is_dir())
    return run, json.loads((run / "summary.json").read_text())


def over_teachers(teachers: dict[str, list[str]], work: Path | None,
                  rows_of: Callable[[Path, str], list[dict]]) -> list[dict]:
    """``rows_of(run, name)`` for each teacher ``name`` trained with its `flowkit train` arguments under ``work``
    (re-used when given again; a temporary folder when None), all rows together."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for name, args in teachers.items():
            run, _ = trained((work or Path(tmp)) / name, *args)
            rows += rows_of(run, name)
        return rows


def w2_of(summary: dict, solver: str) -> float:
    """The summary's metric (W2 on the 2-D tasks) for ``solver``."""
    return next(r["value"] for r in summary["rows"] if r["solver"] == solver)


@torch.no_grad()
def paired_error(student: Path, flow: Path, sampler: str, n: int = 2000) -> float:
    """E||G(z) - Phi(z)||^2 of the student's 1-step ``sampler`` against the flow's dopri5 map on the same noise."""
    (_, s), (_, f) = load_run(student), load_run(flow)
    z = s.source.sample(n, torch.Generator().manual_seed(7))
    g, _ = s.sample(z, sampler)
    phi, _ = f.sample(z, "dopri5", rtol=1e-7, atol=1e-7)
    return float((g - phi).pow(2).sum(1).mean())


def merged_rows(old: list[dict], new: list[dict], rerun: list[str], order: list[str]) -> list[dict]:
    """``new`` rows (the teacher's and the re-run methods') with the other methods' rows kept from ``old``,
    in ``order`` of method. Valid because a run is a function of its seed: the re-trained teacher is the
    one the kept students were measured against (same seed, same steps). A method in ``new`` that was not asked
    for (the teacher, re-trained for the students) keeps its ``old`` rows where the re-trained run measures exactly
    the same: its training time stays that of its first measurement, not that of a re-run beside other jobs."""
    kept = [r for r in old if r["method"] in order and r["method"] not in rerun]
    for method in dict.fromkeys(r["method"] for r in new if r["method"] not in rerun):
        before, now = ([r for r in rows if r["method"] == method] for rows in (old, new))
        if before and [untimed(r) for r in before] == [untimed(r) for r in now]:
            new, kept = [r for r in new if r["method"] != method], kept + before
    rank = {name: i for i, name in enumerate(order)}
    return sorted(new + kept, key=lambda r: rank.get(r["method"], -1))  # the teacher first, then in order


def untimed(row: dict) -> dict:
    """A result row without its training time: what a re-run of the same seed reproduces."""
    return {key: value for key, value in row.items() if key != "train_s"}


def over_seeds(per_seed: list[list[dict]], metric: str) -> list[dict]:
    """One row per (method, sampler), in the order the seeds list them: the mean over the seeds that have it of
    ``metric`` (W2, FD), its ratio to the seed's teacher and the training time, and of the paired error and the
    metric's spread over evaluation draws where the rows have them, with the standard deviation over those seeds
    (0 for one), their count and each one's ``metric``."""
    keys = list(dict.fromkeys((r["method"], r["solver"]) for rows in per_seed for r in rows))
    out = []
    for key in keys:
        same = [r for rows in per_seed for r in rows if (r["method"], r["solver"]) == key]
        row = {"method": key[0], "solver": key[1], "nfe": statistics.fmean(r["nfe"] for r in same), "seeds": len(same),
               f"seeds_{metric}": [r[metric] for r in same]}
        for name in (metric, "vs_teacher_dopri5", "train_s"):
            row[name] = statistics.fmean(r[name] for r in same)
        for name in (metric, "vs_teacher_dopri5"):
            row[f"{name}_seed_std"] = statistics.stdev(r[name] for r in same) if len(same) > 1 else 0.0
        for name in (f"{metric}_std", "paired_error"):
            values = [r[name] for r in same if r.get(name) is not None]
            if any(name in r for r in same):
                row[name] = statistics.fmean(values) if values else None
        out.append(row)
    return out


def mean_spread(row: dict, metric: str, places: int) -> str:
    """An ``over_seeds`` row's ``metric`` as "mean ± spread": the standard deviation over its seeds, with one seed
    over its evaluation draws where the row has that (else the mean alone)."""
    spread = row[f"{metric}_seed_std"] if row["seeds"] > 1 else row.get(f"{metric}_std")
    return f"{row[metric]:.{places}f}" + ("" if spread is None else f" ± {spread:.{places}f}")


def by_nfe_table(rows: list[dict], metric: str, places: int) -> list[str]:
    """``over_seeds``'s fixed-step rows as a table of one line per method: ``metric`` at each NFE (mean ± the
    standard deviation over the seeds; with one seed, over its evaluation draws where the rows have that), the
    1-NFE ratio to the teacher's dopri5, the 1-NFE paired error where the rows have one, the training time and
    the seed count. Adaptive rows (the teacher's dopri5) are left to the caller's heading."""
    fixed = [r for r in rows if r["solver"] != "dopri5"]
    nfes = sorted({round(r["nfe"]) for r in fixed})
    paired = any("paired_error" in r for r in fixed)
    head = ["method", "sampler", *(f"{n} NFE" for n in nfes), "1 NFE / teacher dopri5",
            *(["paired error (1 NFE)"] if paired else []), "train (s)", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for method in dict.fromkeys(r["method"] for r in fixed):
        mine = {round(r["nfe"]): r for r in fixed if r["method"] == method}
        one = mine.get(1) or next(iter(mine.values()))
        ratio = f"{one['vs_teacher_dopri5']:.2f}" + (f" ± {one['vs_teacher_dopri5_seed_std']:.2f}"
                                                     if one["seeds"] > 1 else "")
        error = [] if not paired else ["" if one.get("paired_error") is None else f"{one['paired_error']:.4f}"]
        cells = ("" if n not in mine else mean_spread(mine[n], metric, places) for n in nfes)
        lines.append("| " + " | ".join([method, one["solver"].split(":")[0], *cells,
                                        ratio, *error, f"{one['train_s']:.0f}", str(one["seeds"])]) + " |")
    return lines


def nearest(x: torch.Tensor, cloud: torch.Tensor, chunk: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance to, and index of, each row's nearest row of ``cloud``."""
    found = [torch.cdist(part, cloud).min(1) for part in x.split(chunk)]
    return torch.cat([d for d, _ in found]), torch.cat([i for _, i in found])


def seed_means(by_name: dict[str, list[dict]], first: str = "teacher") -> list[dict]:
    """Per run name, its seeds' records ({"sampler": ..., numbers...}) as one row: the numbers' means over the
    seeds, the sampler and the seed count; the runs named ``first...`` first, the rest in the order found."""
    return [{"run": name, "sampler": seeds[0]["sampler"], "seeds": len(seeds),
             **{key: statistics.fmean(s[key] for s in seeds) for key in seeds[0] if key != "sampler"}}
            for name, seeds in sorted(by_name.items(), key=lambda kv: not kv[0].startswith(first))]


def report(out: Path, name: str, payload: dict, lines: list[str]) -> None:
    """Write ``out/name.json`` (the numbers) and ``out/name.md`` (the table), and print the table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(payload, indent=2))
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
