import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from animatediff.cli import main
from animatediff.formats import save_motion_modules
from animatediff.formats.motion_lora import save_motion_lora
from animatediff.pipeline import AnimationPipeline
from tests.ldm_checkpoint import ldm_state_dict, save_ldm_checkpoint
from tests.tiny import tiny_motion, tiny_text_encoder, tiny_unet, tiny_vae

ATTN = "down_blocks.0.attentions.0.transformer_blocks.0"


def _pair(out: int, inp: int, rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rank, inp, generator=g) * 0.3, torch.randn(out, rank, generator=g) * 0.3


@pytest.fixture
def files(tmp_path, tokenizer):
    mm = tiny_motion("v2")
    files = {"motion": save_motion_modules(mm, tmp_path / "mm.safetensors")}
    files["dreambooth"] = tmp_path / "personal.safetensors"
    save_ldm_checkpoint(files["dreambooth"], tiny_unet(seed=5), tiny_vae(seed=6), tiny_text_encoder(len(tokenizer), 7))
    down, up = _pair(32, 32, 4, 0)
    kohya = {
        f"lora_unet_{ATTN}_attn1_to_q".replace(".", "_") + ".lora_down.weight": down,
        f"lora_unet_{ATTN}_attn1_to_q".replace(".", "_") + ".lora_up.weight": up,
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": down.clone(),
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": up.clone(),
    }
    save_file(kohya, tmp_path / "style.safetensors")
    files["lora"] = tmp_path / "style.safetensors"
    target = "up_blocks.1.motion_modules.0.temporal_transformer.transformer_blocks.0.attention_blocks.0.to_v.weight"
    files["motion_lora"] = save_motion_lora({target: _pair(32, 32, 4, 1)}, tmp_path / "pan.safetensors")
    adapter = dict(zip(("down", "up"), _pair(32, 32, 8, 2)))
    adapter = {f"{ATTN}.attn2.processor.to_out_lora.{k}.weight": v for k, v in adapter.items()}
    torch.save(adapter, tmp_path / "adapter.ckpt")
    files["adapter"] = tmp_path / "adapter.ckpt"
    return files


def _generate(base_folder, files, tmp_path, *extra: str) -> tuple[int, np.ndarray | None]:  # noqa: ANN001
    out = tmp_path / f"out{len(list(tmp_path.glob('out*.npy')))}.npy"
    rc = main(["generate", "--base", str(base_folder), "--motion-module", str(files["motion"]), "--prompt", "a fox",
               "--frames", "2", "--steps", "1", "--seed", "4", "--output", str(out), "--quiet", *extra])  # fmt: skip
    return rc, np.load(out) if rc == 0 else None


def test_cli_applies_dreambooth_and_every_lora_kind(base_folder, files, tmp_path):
    options = {
        "--dreambooth": str(files["dreambooth"]),
        "--lora": f"{files['lora']}:0.7",
        "--motion-lora": f"{files['motion_lora']}:0.5",
        "--adapter-lora": f"{files['adapter']}:0.9",
    }
    rc, video = _generate(base_folder, files, tmp_path, *[x for kv in options.items() for x in kv])
    assert rc == 0
    pipe = AnimationPipeline.from_pretrained(base_folder, files["motion"], dreambooth=files["dreambooth"])
    pipe.add_lora(files["lora"], 0.7)
    pipe.add_lora(files["adapter"], 0.9, kind="adapter")
    pipe.add_lora(files["motion_lora"], 0.5, kind="motion")
    expected = pipe("a fox", num_frames=2, num_inference_steps=1, seed=4, progress=False)[0]
    np.testing.assert_array_equal(video, expected)
    # Each option matters: leaving any one out changes the video.
    for drop in options:
        rest = [x for kv in options.items() if kv[0] != drop for x in kv]
        rc, other = _generate(base_folder, files, tmp_path, *rest)
        assert rc == 0 and np.abs(other - video).max() > 1e-4, drop


def test_repeated_loras_compose(base_folder, files, tmp_path):
    lora = str(files["lora"])
    rc, twice = _generate(base_folder, files, tmp_path, "--lora", f"{lora}:0.3", "--lora", lora)
    rc2, summed = _generate(base_folder, files, tmp_path, "--lora", f"{lora}:1.3")
    rc3, once = _generate(base_folder, files, tmp_path, "--lora", lora)
    assert rc == rc2 == rc3 == 0
    # 0.3 + 1.0 merges like 1.3 (up to float rounding), not like the last flag alone.
    assert np.abs(twice - summed).max() < 0.05 * np.abs(twice - once).max()


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--lora", "{lora}:strong", "LoRA scale 'strong' is not a number"),
        ("--motion-lora", "{lora}", "not a MotionLoRA"),
        ("--lora", "{motion_lora}", "0 of 1 LoRA layers match"),
        ("--dreambooth", "{sdxl}", "SDXL checkpoint"),
        ("--adapter-lora", "{missing}", "not found"),
    ],
)
def test_bad_personalization_is_one_clear_line(base_folder, files, tmp_path, capsys, tokenizer, option, value, message):
    sd = ldm_state_dict(tiny_unet(), tiny_vae(), tiny_text_encoder(len(tokenizer)))
    sd["conditioner.embedders.1.model.ln_final.weight"] = torch.zeros(1)
    save_file(sd, tmp_path / "sdxl.safetensors")
    paths = {k: str(v) for k, v in files.items()} | {"sdxl": tmp_path / "sdxl.safetensors", "missing": "./none.ckpt"}
    rc, _ = _generate(base_folder, files, tmp_path, option, value.format(**paths))
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert rc == 2 and "Traceback" not in err and len(errors) == 1 and message in errors[0]
