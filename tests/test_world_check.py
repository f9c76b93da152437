"""`world check`: a build's figures against the embedded build's, each within its band."""

import json

import pytest

from animatediff.errors import InputError
from animatediff.world import check
from animatediff.world.layout import EMBEDDED


def test_the_embedded_table_reads_back_and_equals_itself():
    table = check.embedded_eval_table()
    assert len(table) == 14 and table["base + motion module"]["motion accuracy"] == 0.79
    figures = check.eval_figures(table, table)
    assert len(figures) == 14 * 4 and all(f.within for f in figures)


def test_figures_outside_their_band_are_named(tmp_path):
    shipped = check.embedded_eval_table()
    rows = [
        {"name": name, "motion_accuracy": row["motion accuracy"] - (0.3 if i == 0 else 0.1),
         "colour_accuracy": row["colour accuracy"], "look_accuracy": row.get("look accuracy"),
         "consistency": row["consistency"]}
        for i, (name, row) in enumerate(shipped.items())
    ]  # fmt: skip
    (tmp_path / "eval.json").write_text(json.dumps(rows))
    figures = check.eval_figures(shipped, check.read_eval_table(tmp_path / "eval.json"))
    outside = [f for f in figures if not f.within]
    assert [f.name for f in outside] == ["base + motion module · motion accuracy"]
    assert outside[0].line().startswith("OUTSIDE base + motion module · motion accuracy: 0.49 (embedded 0.79")
    with pytest.raises(InputError, match="lacks 13 rows"):
        check.eval_figures(shipped, {"base + motion module": shipped["base + motion module"]})


def test_probe_figures_use_a_relative_band_with_a_floor():
    shipped = {"directions": {"true": {200: 0.06}, "direction": {200: 1.34}, "shape": {200: 0.02}}}
    build = {"directions": {"true": {200: 0.0655}, "direction": {200: 1.0}, "shape": {200: 0.06}}}
    verdicts = {f.name: f.within for f in check.probe_figures(shipped, build)}
    assert verdicts == {
        "probe on directions: loss at t=200": True,  # within 10 %
        "probe on directions: direction swapped at t=200": True,  # 1.00 against 1.34 ± 0.47
        "probe on directions: shape swapped at t=200": True,  # 6 against 2 points: within the 5-point floor
    }
    build["directions"]["direction"][200] = 0.8
    assert not {f.name: f.within for f in check.probe_figures(shipped, build)}[
        "probe on directions: direction swapped at t=200"
    ]


def test_world_check_of_the_embedded_build_passes(capsys, one_thread):
    from animatediff.cli import main

    assert main(["world", "check", str(EMBEDDED), "--eval", str(EMBEDDED / "eval.md"), "--images", "8"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"{len(out) - 1} of {len(out) - 1} figures within their bands"
    assert any(line.startswith("ok      probe on directions: direction swapped at t=200") for line in out)
