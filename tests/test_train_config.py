"""Training config: YAML + overrides, documented fields, shipped examples, and clear errors on bad input."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
from pathlib import Path

import pytest
import torch
import yaml

import animatediff.train.config as config_module
from animatediff.cli import main
from animatediff.train.config import TrainConfig, load_config, parse_overrides
from animatediff.train.trainer import Trainer
from tests.test_train_synthetic import fresh_accelerate_state, train_config  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")
CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs" / "train").glob("*.yaml"))


def _write(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def test_defaults_are_the_official_recipe(tmp_path):
    c = load_config(_write(tmp_path / "c.yaml", {"model": {"base": "sd15"}}))
    o = c.optim
    assert (o.learning_rate, o.betas, o.weight_decay, o.eps, o.max_grad_norm) == (1e-4, (0.9, 0.999), 1e-2, 1e-8, 1.0)
    assert (o.lr_scheduler, o.batch_size, o.caption_dropout) == ("constant", 4, 0.1)
    assert (o.beta_start, o.beta_end, o.beta_schedule) == (0.00085, 0.012, "linear")
    assert (c.data.num_frames, c.data.stride, c.data.resolution) == (16, 4, 256)
    assert c.logging.report_to == "tensorboard"


def test_every_field_has_a_docstring():
    tree = ast.parse(inspect.getsource(config_module))
    documented: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            body = node.body
            documented[node.name] = {
                stmt.target.id
                for stmt, following in zip(body, body[1:])
                if isinstance(stmt, ast.AnnAssign)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            }
    classes = [
        c
        for c in vars(config_module).values()
        if dataclasses.is_dataclass(c) and c.__module__ == config_module.__name__
    ]
    assert TrainConfig in classes and len(classes) >= 8
    for cls in classes:
        missing = {f.name for f in dataclasses.fields(cls)} - documented[cls.__name__]
        assert not missing, f"{cls.__name__}: fields without a docstring: {missing}"


def test_overrides_are_typed_and_win_over_the_file(tmp_path):
    path = _write(tmp_path / "c.yaml", {"model": {"base": "sd15"}, "optim": {"learning_rate": 3e-4}})
    c = load_config(
        path,
        [
            "optim.learning_rate=5e-5",
            "optim.betas=[0.8, 0.99]",
            "data.kind=synthetic",
            "lora.enabled=false",
            "validation.prompts=[a, b]",
            "checkpoint.resume_from=latest",
        ],
    )
    assert c.optim.learning_rate == 5e-5 and c.optim.betas == (0.8, 0.99)
    assert c.data.kind == "synthetic" and c.validation.prompts == ["a", "b"]
    assert c.checkpoint.resume_from == "latest"
    assert parse_overrides(["a.b.c=1"]) == {"a": {"b": {"c": 1}}}


@pytest.mark.parametrize(
    ("values", "overrides", "message"),
    [
        ({"model": {"base": "sd15"}, "optim": {"learnig_rate": 1e-4}}, [], "did you mean 'optim.learning_rate'"),
        ({"model": {"base": "sd15"}}, ["optim.max_step=10"], "did you mean 'optim.max_steps'"),
        ({"model": {"base": "sd15"}, "validaton": {}}, [], "did you mean 'validation'"),
        ({"model": {"base": "sd15"}}, ["optim.batch_size=four"], "optim.batch_size' must be of type int"),
        ({"model": {"base": "sd15"}}, ["optim.betas=[0.9]"], "must have 2 entries"),
        ({"model": {"base": "sd15"}}, ["precision=fp8"], "precision: 'fp8' is not one of"),
        ({"model": {"base": "sd15"}}, ["data.num_frames=0"], "data.num_frames must be at least 1"),
        ({}, [], "model.base is required"),
        ({"model": {"base": "sd15"}, "lora": {"enabled": True}}, [], "lora.enabled needs model.init_motion_module"),
        ({"model": {"base": "sd15"}}, ["optim"], "must look like key.sub=value"),
        ({"model": {"base": "sd15"}, "data": {"kind": "world"}}, [], "data.kind: 'world' is not one of"),
        ({"model": {"base": "sd15"}}, ["optim.beta_schedule=cosine"], "optim.beta_schedule: 'cosine' is not one of"),
        ({"model": {"base": "sd15"}}, ["optim.beta_start=0.02"], "must satisfy 0 < beta_start < beta_end < 1"),
    ],
)
def test_bad_configs_are_named(tmp_path, values, overrides, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_config(_write(tmp_path / "c.yaml", values), overrides)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_load(path):
    config = load_config(path)
    assert config.model.base and config.output_dir


def test_shipped_configs_exist():
    assert {p.stem for p in CONFIGS} >= {"motion_module_webvid", "motion_lora", "smoke_synthetic"}


def test_too_many_frames_fail_before_any_weights_load(tmp_path):
    base = tmp_path / "base"  # only the config files: loading weights would fail loudly
    for part, cfg in (
        ("unet", {"block_out_channels": [32, 64], "layers_per_block": 2, "sample_size": 8}),
        ("vae", {"block_out_channels": [32, 32]}),
        ("text_encoder", {}),
        ("tokenizer", {}),
    ):
        (base / part).mkdir(parents=True)
        (base / part / "config.json").write_text(json.dumps(cfg))
    config = train_config(base, tmp_path / "run", data={"num_frames": 40})
    with pytest.raises(ValueError, match="data.num_frames is 40.*at most 32"):
        Trainer(config)
    v1 = train_config(base, tmp_path / "run", data={"num_frames": 28}, model={"scratch": {"version": "v1"}})
    with pytest.raises(ValueError, match="at most 24"):
        Trainer(v1)
    odd = train_config(base, tmp_path / "run", data={"resolution": 18})
    with pytest.raises(ValueError, match="data.resolution 18 must be a multiple of 4"):
        Trainer(odd)


def test_unknown_tracker_is_named(base_folder, tmp_path):
    with pytest.raises(ValueError, match="logging.report_to: 'tensorbored' is not one of"):
        Trainer(train_config(base_folder, tmp_path / "run", logging={"report_to": "tensorbored"}))


def test_missing_data_is_named(base_folder, tmp_path):
    with pytest.raises(ValueError, match="data.kind 'folder' needs data.video_folder"):
        Trainer(train_config(base_folder, tmp_path / "run", data={"kind": "folder"}))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Trainer(
            train_config(base_folder, tmp_path / "run", data={"kind": "folder", "video_folder": str(tmp_path / "x")})
        )
    with pytest.raises(ValueError, match="fewer than one batch"):
        Trainer(train_config(base_folder, tmp_path / "run", data={"synthetic_clips": 1}))


@pytest.mark.usefixtures("one_thread")
def test_resuming_with_a_different_config_names_the_fields(base_folder, tmp_path):
    Trainer(train_config(base_folder, tmp_path / "run", optim={"max_steps": 1})).train()
    changed = train_config(
        base_folder,
        tmp_path / "run",
        optim={"max_steps": 4, "learning_rate": 2e-3},
        data={"stride": 2},
        checkpoint={"resume_from": "latest"},
    )
    with pytest.raises(ValueError, match="differing fields") as err:
        Trainer(changed)
    text = str(err.value)
    assert "optim.learning_rate: checkpoint 0.001, now 0.002" in text and "data.stride" in text
    assert "max_steps" not in text  # training longer is what resuming is for
    same = train_config(base_folder, tmp_path / "run", optim={"max_steps": 2}, checkpoint={"resume_from": "latest"})
    assert Trainer(same).step == 1
    with pytest.raises(ValueError, match="already holds checkpoints.*resume_from=latest"):
        Trainer(train_config(base_folder, tmp_path / "run", optim={"max_steps": 2}))  # would overwrite them
    with pytest.raises(FileNotFoundError, match="not a training checkpoint"):
        Trainer(train_config(base_folder, tmp_path / "run", checkpoint={"resume_from": str(tmp_path)}))


def test_cli_train_prints_config_and_reports_errors_in_one_line(tmp_path, capsys):
    path = _write(tmp_path / "c.yaml", {"model": {"base": "sd15"}})
    assert main(["train", str(path), "optim.learning_rate=2e-5", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["learning_rate"] == 2e-5 and printed["model"]["base"] == "sd15"
    assert main(["train", str(path), "optim.lr=1"]) == 2
    assert "unknown config key 'optim.lr'" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "training config not found" in capsys.readouterr().err


@pytest.mark.usefixtures("one_thread")
def test_cli_train_runs_a_config(base_folder, tmp_path, capsys):
    config = train_config(base_folder, tmp_path / "run", optim={"max_steps": 2})
    path = _write(tmp_path / "c.yaml", config.to_dict())
    assert main(["train", str(path), "optim.max_steps=1"]) == 0
    assert "trained to step 1" in capsys.readouterr().out
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-00000001" / "motion_module.safetensors").is_file()


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_loss_weightings_weigh_the_x0_error_as_named(prediction_type):
    from diffusers import DDPMScheduler

    from animatediff.train.config import OptimConfig
    from animatediff.train.noise import timestep_weights

    scheduler = DDPMScheduler(
        beta_schedule="linear", beta_start=0.00085, beta_end=0.012, prediction_type=prediction_type
    )
    t = torch.tensor([0, 100, 400, 700, 951, 999])
    alpha = scheduler.alphas_cumprod[t].double()
    snr = alpha / (1 - alpha)
    x0, noise = torch.randn(6, 64, dtype=torch.float64), torch.randn(6, 64, dtype=torch.float64)
    x0_hat = x0 + 0.1 * torch.randn(6, 64, dtype=torch.float64)
    noisy = alpha.sqrt()[:, None] * x0 + (1 - alpha).sqrt()[:, None] * noise
    # The prediction consistent with x0_hat, in the target's parametrization.
    eps_hat = (noisy - alpha.sqrt()[:, None] * x0_hat) / (1 - alpha).sqrt()[:, None]
    if prediction_type == "epsilon":
        target, prediction = noise, eps_hat
    else:
        target = alpha.sqrt()[:, None] * noise - (1 - alpha).sqrt()[:, None] * x0
        prediction = alpha.sqrt()[:, None] * eps_hat - (1 - alpha).sqrt()[:, None] * x0_hat
    target_mse, x0_mse = ((prediction - target) ** 2).mean(1), ((x0_hat - x0) ** 2).mean(1)
    expected = {"none": None, "min_snr": snr.clamp(max=5.0), "truncated_snr": snr.clamp(min=1.0)}
    for name, x0_weight in expected.items():
        w = timestep_weights(scheduler, t, prediction_type, OptimConfig(loss_weighting=name, max_loss_weight=1e9))
        if x0_weight is None:
            assert torch.equal(w, torch.ones(6))
        else:
            torch.testing.assert_close(w.double() * target_mse, x0_weight * x0_mse, rtol=1e-4, atol=0)
    capped = timestep_weights(scheduler, t, "epsilon", OptimConfig(loss_weighting="truncated_snr", max_loss_weight=50))
    assert capped.max() == 50 and capped[0] == 1  # nearly clean timesteps keep weight 1
    with pytest.raises(
        ValueError, match="optim.loss_weighting: 'snr' is not one of 'none', 'min_snr', 'truncated_snr'"
    ):
        TrainConfig(model=config_module.ModelConfig(base="x"), optim=OptimConfig(loss_weighting="snr"))


def test_timestep_bias_draws_the_favoured_portion_as_often_as_its_multiplier_says():
    from animatediff.train.config import OptimConfig
    from animatediff.train.noise import draw_timesteps, timestep_probabilities

    uniform = OptimConfig()
    assert torch.equal(
        draw_timesteps(64, uniform, torch.Generator().manual_seed(3)),
        torch.randint(0, 1000, (64,), generator=torch.Generator().manual_seed(3)),
    )  # runs without a bias draw what they drew before the option existed
    later = OptimConfig(timestep_bias="later", timestep_bias_portion=0.25, timestep_bias_multiplier=3.0)
    p = timestep_probabilities(later)
    # 250 timesteps at weight 3 against 750 at weight 1: half the draws land in the noisiest quarter.
    assert p.sum().item() == pytest.approx(1.0) and p[750:].sum().item() == pytest.approx(0.5)
    assert p[999] == p[750] == 3 * p[749]
    drawn = draw_timesteps(20_000, later, torch.Generator().manual_seed(0))
    assert drawn.min() >= 0 and drawn.max() <= 999
    assert (drawn >= 750).float().mean().item() == pytest.approx(0.5, abs=0.02)
    earlier = timestep_probabilities(OptimConfig(timestep_bias="earlier", timestep_bias_multiplier=2.0))
    assert earlier[:250].sum().item() == pytest.approx(0.4)
    with pytest.raises(ValueError, match="optim.timestep_bias: 'high' is not one of 'none', 'later', 'earlier'"):
        TrainConfig(model=config_module.ModelConfig(base="x"), optim=OptimConfig(timestep_bias="high"))
    with pytest.raises(ValueError, match="optim.timestep_bias_portion must be in"):
        TrainConfig(model=config_module.ModelConfig(base="x"), optim=OptimConfig(timestep_bias_portion=0.0))


@pytest.mark.usefixtures("one_thread")
def test_a_weighted_run_trains_and_old_checkpoints_resume(base_folder, tmp_path):
    weighted = train_config(
        base_folder,
        tmp_path / "w",
        optim={
            "max_steps": 1,
            "loss_weighting": "truncated_snr",
            "timestep_bias": "later",
            "timestep_bias_multiplier": 4,
        },
    )
    assert torch.isfinite(torch.tensor(Trainer(weighted).train()["loss"]))
    # A checkpoint written before the weighting existed ran unweighted, and resumes as such.
    Trainer(train_config(base_folder, tmp_path / "run", optim={"max_steps": 1})).train()
    state_file = next((tmp_path / "run" / "checkpoints").iterdir()) / "trainer_state.json"
    state = json.loads(state_file.read_text())
    for key in (
        "loss_weighting",
        "snr_gamma",
        "max_loss_weight",
        "timestep_bias",
        "timestep_bias_portion",
        "timestep_bias_multiplier",
    ):
        del state["config"]["optim"][key]
    # ... and one written when the config still had the world's data fields, at the values that drew no world clips.
    state["config"]["data"] |= {"world_motions": [], "world_growth_core": False}
    state_file.write_text(json.dumps(state))
    resumed = train_config(base_folder, tmp_path / "run", optim={"max_steps": 2}, checkpoint={"resume_from": "latest"})
    assert Trainer(resumed).step == 1
    changed = train_config(
        base_folder,
        tmp_path / "run",
        optim={"max_steps": 2, "loss_weighting": "min_snr"},
        checkpoint={"resume_from": "latest"},
    )
    with pytest.raises(ValueError, match="optim.loss_weighting: checkpoint 'none', now 'min_snr'"):
        Trainer(changed)
