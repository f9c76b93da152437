"""Is a world build sound? Its probe and evaluation figures against the embedded build's, each within a band.

A rebuild gives the embedded weights bit for bit only where torch picks the same kernels (the same CPU capability)
and the libraries are the same versions (`build.json` records both). Elsewhere its weights differ in the last
bits, training drifts from there, and what can be asked is that the model does the same: its `world probe` and
`world eval` figures fall within the bands below of the embedded build's. A rebuild on another kernel path (torch's
AVX2 kernels where the embedded build used AVX512; world README, "What reproduces") differed by at most 0.09 in
motion, 0.10 in look, 0.05 in consistency and 0 in colour accuracy, 3.6 % in a probe's loss and 24 % in a loss rise;
the bands are about twice that, which leaves room for the evaluation's own sampling error on 24 clips a row.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from animatediff.errors import InputError, InputNotFound
from animatediff.world.layout import EMBEDDED

EVAL_FIGURES = ("motion accuracy", "colour accuracy", "look accuracy", "consistency")
"""The columns of the evaluation table, as `evaluate.table` writes them."""
EVAL_BANDS = {"motion accuracy": 0.2, "colour accuracy": 0.1, "look accuracy": 0.15, "consistency": 0.15}
"""Largest difference from the embedded build's figure, per evaluation column (fractions)."""
PROBE_RELATIVE_BAND = 0.35
"""Largest difference of a probe's loss rise from the embedded build's, as a fraction of it ..."""
PROBE_ABSOLUTE_BAND = 0.05
"""... or 5 points of rise, whichever is larger (a small rise is mostly noise)."""
PROBE_LOSS_BAND = 0.1
"""Largest relative difference of the probe's reference loss (nothing swapped)."""


@dataclass(frozen=True)
class Figure:
    """One figure of a build against the embedded build's."""

    name: str
    shipped: float
    build: float
    band: float
    """The largest difference allowed."""
    kind: str = "fraction"
    """How it reads: 'fraction' (an accuracy or consistency), 'loss' (an MSE), 'rise' (a relative loss rise)."""

    @property
    def within(self) -> bool:
        return abs(self.build - self.shipped) <= self.band + 1e-9

    def line(self) -> str:
        """'ok      <name>: <build> (embedded <shipped>, band ±<band>)', or OUTSIDE in place of ok."""
        show = {"fraction": "{:.2f}".format, "loss": "{:.4f}".format, "rise": lambda v: f"{100 * v:+.1f} %"}[self.kind]
        band = f"{100 * self.band:.1f} points" if self.kind == "rise" else show(self.band)
        verdict = "ok     " if self.within else "OUTSIDE"
        return f"{verdict} {self.name}: {show(self.build)} (embedded {show(self.shipped)}, band ±{band})"


def read_eval_table(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """{row name: {column: value}} from an eval.md table or an eval.json that `world eval` wrote."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"evaluation table not found: {path}")
    if path.suffix == ".json":
        rows = json.loads(path.read_text())
        keys = {"motion accuracy": "motion_accuracy", "colour accuracy": "colour_accuracy"}
        keys |= {"look accuracy": "look_accuracy", "consistency": "consistency"}
        return {r["name"]: {c: r[k] for c, k in keys.items() if r.get(k) is not None} for r in rows}
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip().startswith("|")]
    if len(lines) < 3:
        raise InputError(f"{path} holds no evaluation table")
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    table = {}
    for line in lines[2:]:
        cells = dict(zip(header, (cell.strip() for cell in line.strip("|").split("|"))))
        table[cells[header[0]]] = {c: float(cells[c]) for c in EVAL_FIGURES if cells.get(c, "–") not in ("–", "")}
    return table


def eval_figures(shipped: dict[str, dict[str, float]], build: dict[str, dict[str, float]]) -> list[Figure]:
    """Every figure of every row both tables have."""
    missing = sorted(set(shipped) - set(build))
    if missing:
        raise InputError(f"the build's evaluation lacks {len(missing)} rows of the embedded one's, e.g. {missing[0]!r}")
    return [
        Figure(f"{row} · {column}", shipped[row][column], build[row][column], EVAL_BANDS[column])
        for row in shipped
        for column in EVAL_FIGURES
        if column in shipped[row] and column in build[row]
    ]


def probe_figures(shipped: dict, build: dict) -> list[Figure]:
    """From two `{family: word_reliance result}`: the reference loss and each swap's rise, per timestep."""
    figures = []
    for family, result in shipped.items():
        for swap, rises in result.items():
            for t, value in rises.items():
                other = build[family][swap][t]
                if swap == "true":
                    figure = Figure(f"probe on {family}: loss at t={t}", value, other, PROBE_LOSS_BAND * value, "loss")
                else:
                    band = max(PROBE_RELATIVE_BAND * abs(value), PROBE_ABSOLUTE_BAND)
                    figure = Figure(f"probe on {family}: {swap} swapped at t={t}", value, other, band, "rise")
                figures.append(figure)
    return figures


def probe(base: str | os.PathLike, images: int = 48) -> dict:
    """`world probe`'s caption-word figures for a base: {family: {swap: {timestep: value}}}."""
    from animatediff.world.probes import PROBED_MOTIONS, word_reliance

    return {family: word_reliance(base, images, motions=motions) for family, motions in PROBED_MOTIONS.items()}


def embedded_eval_table() -> dict[str, dict[str, float]]:
    """The embedded build's evaluation (assets/world/eval.md: 12 prompts × 2 seeds, 25 DDIM steps, guidance 3)."""
    return read_eval_table(EMBEDDED / "eval.md")
