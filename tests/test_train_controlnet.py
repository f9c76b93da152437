"""The trainer's ControlNet mode on a tiny SD1.x model and synthetic clips: only the ControlNet learns, its residuals
reach the animated UNet exactly as at inference, its export loads as a `--controlnet`, and a run resumes exactly."""

from __future__ import annotations

import pytest
import torch

from animatediff.errors import InputError
from animatediff.formats.controlnet import load_controlnet
from animatediff.formats.motion_module_files import save_motion_modules
from animatediff.pipeline.annotators import canny
from animatediff.pipeline.controlnet import ControlNet, ControlNetCondition
from animatediff.train.controlnet import CONTROLNET_FOLDER, control_images
from animatediff.train.trainer import Trainer
from tests.controlnet_helpers import tiny_controlnet
from tests.test_train_synthetic import fresh_accelerate_state, train_config  # noqa: F401 - fixtures
from tests.tiny import tiny_motion

pytestmark = pytest.mark.usefixtures("one_thread", "fresh_accelerate_state")
pytest.importorskip("cv2")  # the default annotator, canny


def controlnet_config(base_folder, tmp_path, name: str = "run", **sections):  # noqa: ANN001, ANN201
    init = tmp_path / "motion.safetensors"
    if not init.is_file():
        save_motion_modules(tiny_motion("v3"), init)
    sections["model"] = {"init_motion_module": str(init), **sections.get("model", {})}
    sections["controlnet"] = {"enabled": True, **sections.get("controlnet", {})}
    return train_config(base_folder, tmp_path / name, **sections)


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_only_the_controlnet_learns_and_its_export_loads(base_folder, tmp_path):
    trainer = Trainer(controlnet_config(base_folder, tmp_path, optim={"max_steps": 3, "caption_dropout": 0.0}))
    frozen = {
        "unet": _weights(trainer.unet.unet),
        "motion": _weights(trainer.unet.motion_modules),
        "vae": _weights(trainer.vae),
        "text_encoder": _weights(trainer.text_encoder),
    }
    before = _weights(trainer.controlnet)
    assert {id(p) for p in trainer.trainable} == {id(p) for p in trainer.controlnet.parameters()}
    # ControlNet's own start: the output convolutions are zero, so the first step predicts what the base does.
    assert all(not p.any() for n, p in trainer.controlnet.named_parameters() if n.startswith("controlnet_down"))

    result = trainer.train()

    parts = {"unet": trainer.unet.unet, "motion": trainer.unet.motion_modules, "vae": trainer.vae}
    parts["text_encoder"] = trainer.text_encoder
    for name, part in parts.items():
        after = part.state_dict()
        assert all(torch.equal(frozen[name][k], after[k]) for k in frozen[name]), f"{name} changed"
    after = _weights(trainer.controlnet)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("controlnet_down_blocks") for k in changed)
    assert any(k.startswith("controlnet_cond_embedding") for k in changed)

    # The checkpoint holds the ControlNet alone (no motion module export), loadable as a pipeline ControlNet.
    checkpoint = result["checkpoint"]
    assert not (checkpoint / "motion_module.safetensors").exists()
    loaded = load_controlnet(checkpoint / CONTROLNET_FOLDER, trainer.unet.unet)
    assert all(torch.equal(v, after[k]) for k, v in loaded.state_dict().items())


def test_training_residuals_are_the_pipelines(base_folder, tmp_path):
    """What the trained ControlNet learns through is what `pipe(..., controlnets=[...])` feeds the UNet."""
    trainer = Trainer(controlnet_config(base_folder, tmp_path))
    torch.manual_seed(0)
    steered = tiny_controlnet(trainer.unet.unet)  # non-zero output convolutions: the residuals matter
    trainer.controlnet.load_state_dict(steered.state_dict())
    trainer.controlnet.eval()
    x = torch.randn(2, 4, 4, 8, 8)
    t = torch.tensor([500, 500])
    text = torch.randn(2, 7, trainer.unet.unet.config.cross_attention_dim)
    control = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        trained = trainer.model(x, t, text, control.expand(2, -1, -1, -1, -1))
        condition = ControlNetCondition(ControlNet(trainer.controlnet, control), t[:1], False, torch.device("cpu"))
        kwargs = condition.unet_kwargs(x, t[0], text, torch.arange(4))
        inference = trainer.unet(x, t[0], text, **kwargs)
        plain = trainer.unet(x, t[0], text)
    torch.testing.assert_close(trained, inference, rtol=0, atol=1e-6)
    assert (trained - plain).abs().max() > 1e-3


def test_control_images_are_canny_edges_of_the_clip_or_the_items_own():
    pixels = -torch.ones(1, 2, 3, 16, 16)
    pixels[:, :, :, 4:12, 4:12] = 1.0  # a white square on black
    edges = control_images({"pixel_values": pixels}, "canny")
    assert edges.shape == pixels.shape and set(edges.unique().tolist()) == {0.0, 1.0}
    on = edges[0, 0, 0].nonzero()
    assert len(on) and on.min() >= 3 and on.max() <= 12  # the square's outline only
    assert not edges[0, 0, 0, 6:10, 6:10].any()
    square = ((pixels[0] + 1) / 2).permute(0, 2, 3, 1).numpy()
    assert torch.equal(edges[0], torch.from_numpy(canny(square)).permute(0, 3, 1, 2))  # what inference makes
    given = torch.rand(1, 2, 3, 16, 16)
    assert torch.equal(control_images({"pixel_values": pixels, "control_values": given}, "none"), given)
    with pytest.raises(InputError, match="'none' takes the control images from the dataset's items"):
        control_images({"pixel_values": pixels}, "none")
    with pytest.raises(InputError, match="one control image per frame"):
        control_images({"pixel_values": pixels, "control_values": given[:, :1]}, "none")


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"model": {"init_motion_module": None}}, "controlnet.enabled needs model.init_motion_module"),
        ({"lora": {"enabled": True}}, "lora.enabled and controlnet.enabled: a run trains one of them"),
        ({"validation": {"every": 1, "prompts": ["x"]}}, "set validation.every=0"),
        ({"controlnet": {"annotator": "depth"}}, "controlnet.annotator: 'depth' is not one of"),
    ],
)
def test_bad_controlnet_configs_are_refused(base_folder, tmp_path, sections, message):
    with pytest.raises(InputError, match=message):
        Trainer(controlnet_config(base_folder, tmp_path, **sections))


def test_a_controlnet_for_another_vae_is_refused(base_folder, tmp_path):
    from tests.tiny import tiny_unet

    other = tmp_path / "cn"
    tiny_controlnet(tiny_unet(), stages=(16, 32, 96)).save_pretrained(other)  # 4× hint encoder, the tiny VAE is 2×
    with pytest.raises(InputError, match="downsamples control images 4×, but this base's VAE 2×"):
        Trainer(controlnet_config(base_folder, tmp_path, controlnet={"init": str(other)}))


def test_kill_and_resume_equals_an_uninterrupted_run(base_folder, tmp_path):
    sections = dict(
        optim={"max_steps": 4, "warmup_steps": 2, "lr_scheduler": "linear", "caption_dropout": 0.5},
        checkpoint={"every": 2, "keep_last": 0, "resume_from": "latest"},
    )
    whole = Trainer(controlnet_config(base_folder, tmp_path, "whole", **sections))
    whole.train()
    killed = Trainer(controlnet_config(base_folder, tmp_path, "split", **sections))
    killed.train(stop_after=3)  # "killed" after step 3: the newest checkpoint is step 2
    resumed = Trainer(controlnet_config(base_folder, tmp_path, "split", **sections))
    assert resumed.step == 2
    resumed.train()
    a, b = _weights(whole.controlnet), _weights(resumed.controlnet)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_trains_a_controlnet_that_generate_takes(base_folder, tmp_path, capsys):
    import yaml

    from animatediff.cli import main

    config = controlnet_config(base_folder, tmp_path, optim={"max_steps": 1})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**config.to_dict(), "controlnet": {"enabled": False}}))
    assert main(["train", str(path), "controlnet.enabled=true", "logging.progress=true"]) == 0
    out = capsys.readouterr().out
    assert "training a ControlNet (a copy of the base UNet's encoder) over the frozen" in out
    exported = tmp_path / "run" / "checkpoints" / "checkpoint-00000001" / CONTROLNET_FOLDER
    control = tmp_path / "control"
    control.mkdir()
    from PIL import Image

    for i in range(4):
        Image.new("RGB", (16, 16), (255 * (i % 2),) * 3).save(control / f"{i:02d}.png")
    gif = tmp_path / "out.gif"
    args = ["generate", "--prompt", "a square", "--base", str(base_folder)]
    args += ["--motion-module", config.model.init_motion_module]
    args += ["--frames", "4", "--width", "16", "--height", "16", "--steps", "2", "--output", str(gif)]
    args += ["--controlnet", str(exported), "--control-frames", str(control)]
    assert main(args) == 0
    assert gif.is_file()


@pytest.mark.parametrize("annotator", ["rgb", "canny"])
def test_sparse_ctrl_mode_trains_the_encoder_that_generate_takes(base_folder, tmp_path, annotator):
    from animatediff.formats.sparse_ctrl import load_sparse_ctrl
    from animatediff.pipeline.sparse_ctrl import SparseCtrl
    from animatediff.train.sparse_ctrl import SPARSECTRL_FILE, SPARSECTRL_FOLDER

    sections = {"controlnet": {"kind": "sparsectrl", "annotator": annotator}, "optim": {"caption_dropout": 0.0}}
    trainer = Trainer(controlnet_config(base_folder, tmp_path, **sections))
    frozen = _weights(trainer.unet)
    before = _weights(trainer.controlnet)
    assert trainer.controlnet.sparse_config.takes_latents == (annotator == "rgb")
    result = trainer.train()
    after = _weights(trainer.controlnet)
    assert all(torch.equal(frozen[k], v) for k, v in _weights(trainer.unet).items())
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"controlnet", "motion"}  # its ControlNet part and its motion modules both learn
    for exported in (result["checkpoint"] / SPARSECTRL_FILE, result["checkpoint"] / SPARSECTRL_FOLDER):
        loaded = load_sparse_ctrl(exported, trainer.unet.unet.config)
        assert all(torch.equal(v, after[k]) for k, v in loaded.state_dict().items())
    from animatediff.pipeline import AnimationPipeline

    pipe = AnimationPipeline.from_pretrained(
        base_folder, controlnet_config(base_folder, tmp_path).model.init_motion_module
    )
    frames = pipe("a square", num_frames=4, height=16, width=16, num_inference_steps=2, progress=False,
                  sparse_ctrls=[SparseCtrl(loaded, {0: torch.rand(3, 16, 16)})])  # fmt: skip
    assert frames.shape == (1, 4, 16, 16, 3)


def test_sparse_ctrl_keyframes_are_drawn_as_configured():
    from animatediff.train.sparse_ctrl import draw_keyframes, sparse_condition

    generator = torch.Generator().manual_seed(0)
    masks = draw_keyframes(400, 8, 3, 0.5, generator)
    counts = masks.sum(1)
    assert counts.min() == 1 and counts.max() == 3
    assert 0.4 < masks[:, 0].mean() < 0.6  # frame 0 in about half the clips
    always = draw_keyframes(50, 8, 1, 1.0, generator)
    assert torch.equal(always, torch.eye(8)[[0] * 50])  # image-to-video only
    latents = torch.randn(2, 4, 8, 4, 4)
    condition, mask = sparse_condition({}, latents, "rgb", masks[:2])
    assert torch.equal(condition[:, :, masks[0] == 0][0], torch.zeros_like(condition[:, :, masks[0] == 0][0]))
    assert torch.equal(mask[:, 0, :, 0, 0], masks[:2])


def test_sparse_ctrl_resumes_exactly(base_folder, tmp_path):
    sections = dict(
        controlnet={"kind": "sparsectrl", "annotator": "rgb"},
        optim={"max_steps": 4, "caption_dropout": 0.5},
        checkpoint={"every": 2, "keep_last": 0, "resume_from": "latest"},
    )
    whole = Trainer(controlnet_config(base_folder, tmp_path, "whole", **sections))
    whole.train()
    Trainer(controlnet_config(base_folder, tmp_path, "split", **sections)).train(stop_after=3)
    resumed = Trainer(controlnet_config(base_folder, tmp_path, "split", **sections))
    assert resumed.step == 2
    resumed.train()
    a, b = _weights(whole.controlnet), _weights(resumed.controlnet)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sparse_ctrl_and_controlnet_annotators_do_not_mix(base_folder, tmp_path):
    with pytest.raises(InputError, match="'rgb' is for a SparseCtrl encoder, not controlnet.kind 'controlnet'"):
        controlnet_config(base_folder, tmp_path, controlnet={"annotator": "rgb"})
    with pytest.raises(InputError, match="'none' is for a ControlNet, not controlnet.kind 'sparsectrl'"):
        controlnet_config(base_folder, tmp_path, controlnet={"kind": "sparsectrl", "annotator": "none"})


def test_t2i_adapter_mode_learns_only_the_adapter_through_the_pipelines_features_and_exports_it(base_folder, tmp_path):
    """The adapter's features reach the animated UNet as `pipe(..., controlnets=[ControlNet(adapter, ...)])` gives
    them; only the adapter learns; its export loads as a `--controlnet`; a run resumes exactly."""
    from diffusers import T2IAdapter

    from animatediff.pipeline.t2i_adapter import AdapterCondition
    from animatediff.train.t2i_adapter import T2I_ADAPTER_FOLDER

    sections = dict(controlnet={"kind": "t2i_adapter"}, optim={"max_steps": 3, "caption_dropout": 0.0})
    trainer = Trainer(controlnet_config(base_folder, tmp_path, **sections))
    assert isinstance(trainer.controlnet, T2IAdapter)
    assert {id(p) for p in trainer.trainable} == {id(p) for p in trainer.controlnet.parameters()}
    trainer.controlnet.eval()
    x, t = torch.randn(2, 4, 4, 8, 8), torch.tensor([500, 500])
    text = torch.randn(2, 7, trainer.unet.unet.config.cross_attention_dim)
    control = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        trained = trainer.model(x, t, text, control.expand(2, -1, -1, -1, -1))
        condition = AdapterCondition(ControlNet(trainer.controlnet, control.permute(0, 2, 3, 1).numpy()), t[:1],
                                     torch.device("cpu"), 2)  # fmt: skip
        inference = trainer.unet(x, t[0], text, **condition.unet_kwargs(x, t[0], text, torch.arange(4)))
        plain = trainer.unet(x, t[0], text)
    torch.testing.assert_close(trained, inference, rtol=0, atol=1e-5)  # features of 8 frames or of 4, repeated
    assert (trained - plain).abs().max() > 1e-3  # a fresh adapter steers from the first step

    motion = _weights(trainer.unet.motion_modules)
    before = _weights(trainer.controlnet)
    result = trainer.train()
    after = _weights(trainer.controlnet)
    assert sum(not torch.equal(before[k], after[k]) for k in before) > len(before) // 2
    assert all(torch.equal(motion[k], v) for k, v in trainer.unet.motion_modules.state_dict().items())
    loaded = load_controlnet(result["checkpoint"] / T2I_ADAPTER_FOLDER, trainer.unet.unet)
    assert isinstance(loaded, T2IAdapter) and all(torch.equal(v, after[k]) for k, v in loaded.state_dict().items())

    resume = dict(optim={"max_steps": 4, "caption_dropout": 0.5}, checkpoint={"every": 2, "resume_from": "latest"})
    kinds = {"kind": "t2i_adapter"}
    whole = Trainer(controlnet_config(base_folder, tmp_path, "whole", controlnet=kinds, **resume))
    whole.train()
    Trainer(controlnet_config(base_folder, tmp_path, "split", controlnet=kinds, **resume)).train(stop_after=3)
    resumed = Trainer(controlnet_config(base_folder, tmp_path, "split", controlnet=kinds, **resume))
    assert resumed.step == 2
    resumed.train()
    a, b = _weights(whole.controlnet), _weights(resumed.controlnet)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_grey_t2i_adapter_goes_on_learning_from_the_edges_in_grey(base_folder, tmp_path):
    """A released sketch or Canny adapter is made for one channel: fine-tuned from it, the trainer gives it the
    control images in grey, as the pipeline does."""
    from diffusers import T2IAdapter

    from animatediff.pipeline.t2i_adapter import AdapterCondition

    torch.manual_seed(1)
    T2IAdapter(in_channels=1, channels=[32, 64], num_res_blocks=1, downscale_factor=2).save_pretrained(tmp_path / "g")
    sections = dict(controlnet={"kind": "t2i_adapter", "init": str(tmp_path / "g")}, optim={"max_steps": 1})
    trainer = Trainer(controlnet_config(base_folder, tmp_path, **sections))
    assert trainer.controlnet.config.in_channels == 1
    trainer.controlnet.eval()
    x, t, text = torch.randn(1, 4, 4, 8, 8), torch.tensor([300]), torch.randn(1, 7, 32)
    control = torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        trained = trainer.model(x, t, text, control[None])
        condition = AdapterCondition(ControlNet(trainer.controlnet, control.permute(0, 2, 3, 1).numpy()), t,
                                     torch.device("cpu"), 2)  # fmt: skip
        inference = trainer.unet(x, t[0], text, **condition.unet_kwargs(x, t[0], text, torch.arange(4)))
    torch.testing.assert_close(trained, inference, rtol=0, atol=1e-5)
    assert trainer.train()["step"] == 1


def test_a_t2i_adapter_run_is_refused_a_controlnet_to_start_from_and_the_rgb_annotator(base_folder, tmp_path):
    from tests.tiny import tiny_unet

    tiny_controlnet(tiny_unet(), stages=(16, 32)).save_pretrained(tmp_path / "cn")
    with pytest.raises(InputError, match="a ControlNet, not a T2I-Adapter"):
        Trainer(
            controlnet_config(base_folder, tmp_path, controlnet={"kind": "t2i_adapter", "init": str(tmp_path / "cn")})
        )
    with pytest.raises(InputError, match="controlnet.annotator 'rgb' is for a SparseCtrl encoder"):
        Trainer(controlnet_config(base_folder, tmp_path, controlnet={"kind": "t2i_adapter", "annotator": "rgb"}))
