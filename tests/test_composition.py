"""Everything at once: video-to-video + ControlNet + SparseCtrl + IP-Adapter + DreamBooth + LoRA + MotionLoRA +
context windows + guidance keyframed by step + FreeU in one call runs, and switching any one of them off changes the
frames."""

import numpy as np
import pytest
from safetensors.torch import save_file

from animatediff.pipeline import AnimationPipeline, ControlNet, FreeU, IPAdapter, SparseCtrl
from tests.controlnet_helpers import tiny_controlnet
from tests.sparse_ctrl_helpers import tiny_sparse_ctrl
from tests.test_cli_personalized import files  # noqa: F401 - fixture: a DreamBooth file, an image LoRA, a MotionLoRA
from tests.test_ip_adapter import sample_image, tiny_image_encoder, tiny_ip_adapter

FRAMES = 10


@pytest.fixture
def everything(base_folder, files, tmp_path, one_thread):  # noqa: F811 - the fixture above
    pipe = AnimationPipeline.from_pretrained(base_folder, files["motion"], dreambooth=files["dreambooth"])
    pipe.add_lora(files["lora"], 0.8)
    pipe.add_lora(files["motion_lora"], 0.7, kind="motion")
    save_file(tiny_ip_adapter(pipe.unet.unet), str(tmp_path / "ip.safetensors"))
    encoder = tiny_image_encoder(tmp_path / "image_encoder")
    rng = np.random.default_rng(0)
    video = np.clip(np.linspace(0, 1, FRAMES)[:, None, None, None] + 0.3 * rng.random((FRAMES, 16, 16, 3)), 0, 1)
    options = dict(
        video=video.astype(np.float32),
        strength=0.7,
        controlnets=[ControlNet(tiny_controlnet(pipe.unet.unet), rng.random((FRAMES, 16, 16, 3)), scale=0.8)],
        sparse_ctrls=[SparseCtrl(tiny_sparse_ctrl(pipe.unet.unet, "rgb"), {0: video[0].astype(np.float32)})],
        ip_adapter=IPAdapter(tmp_path / "ip.safetensors", sample_image(), 0.7, encoder),
        context_length=6,
        context_overlap=2,
        guidance_scale_steps={0.5: 1.0},  # the last steps unguided: the conditional half of every condition
        free_u=FreeU(1.3, 1.4, 0.9, 0.2),
    )
    plain = AnimationPipeline.from_pretrained(base_folder, files["motion"])  # the same without the DreamBooth
    plain.add_lora(files["lora"], 0.8)
    plain.add_lora(files["motion_lora"], 0.7, kind="motion")
    return pipe, plain, options


def draw(pipe: AnimationPipeline, **options) -> np.ndarray:  # noqa: ANN003
    return pipe("a fox", num_frames=FRAMES, num_inference_steps=4, seed=3, progress=False, **options)[0]


def test_all_of_it_runs_and_each_part_counts(everything):
    pipe, without_dreambooth, options = everything
    full = draw(pipe, **options)
    assert np.abs(draw(without_dreambooth, **options) - full).max() > 1e-3, "dreambooth"
    assert full.shape == (FRAMES, 16, 16, 3) and np.isfinite(full).all()
    off = {
        "video": {k: v for k, v in options.items() if k not in ("video", "strength")},
        "controlnet": {**options, "controlnets": []},
        "sparsectrl": {**options, "sparse_ctrls": []},
        "ip_adapter": {**options, "ip_adapter": None},
        "context windows": {k: v for k, v in options.items() if k not in ("context_length", "context_overlap")},
        "guidance keyframes": {**options, "guidance_scale_steps": None},
        "FreeU": {**options, "free_u": None},
    }
    for name, fewer in off.items():
        assert np.abs(draw(pipe, **fewer) - full).max() > 1e-3, name
    for name in [n for n in pipe.loras.active]:  # the LoRAs merged into the weights: each removed changes it too
        scale = pipe.loras.active[name]
        pipe.loras.remove(name)
        assert np.abs(draw(pipe, **options) - full).max() > 1e-3, name
        pipe.add_lora(name.split(":", 1)[1], scale, kind=name.split(":", 1)[0], name=name)
    np.testing.assert_allclose(draw(pipe, **options), full, atol=1e-5)  # and back as it was
