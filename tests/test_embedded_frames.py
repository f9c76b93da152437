"""The embedded world through the composed pipeline gives, bit for bit, the frames of the plain loop it replaces:
CLIP text, one CPU randn, guided DDIM on the base's own schedule (v-prediction, zero terminal SNR, trailing), decode."""

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from animatediff.formats import load_motion_modules
from animatediff.models import inflate_unet
from animatediff.pipeline import AnimationPipeline
from animatediff.world.layout import EMBEDDED, WORLD_GUIDANCE_SCALE

PROMPT, SEED, STEPS, FRAMES = "a red circle moving right on a blue background", 3, 6, 8


@torch.no_grad()
def plain_loop() -> np.ndarray:
    base, kw = EMBEDDED / "base", {"local_files_only": True, "torch_dtype": torch.float32}
    tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder", **kw).eval()
    vae = AutoencoderKL.from_pretrained(base, subfolder="vae", **kw).eval()
    unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", **kw).eval()
    unet = inflate_unet(unet, load_motion_modules(EMBEDDED / "motion_module.safetensors")).eval()
    ids = [tokenizer(p, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
           for p in ("", PROMPT)]  # fmt: skip
    context = torch.cat([text_encoder(i)[0] for i in ids])
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="linear", steps_offset=1, clip_sample=False,
        prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing",
    )  # fmt: skip
    scheduler.set_timesteps(STEPS)
    latents = torch.randn((1, 4, FRAMES, 8, 8), generator=torch.Generator().manual_seed(SEED))
    for t in scheduler.timesteps:
        uncond, cond = unet(torch.cat([latents, latents]), t, context).chunk(2)
        v = uncond + WORLD_GUIDANCE_SCALE * (cond - uncond)
        latents = scheduler.step(v, t, latents, eta=0.0, return_dict=False)[0]
    flat = (latents / vae.config.scaling_factor).permute(0, 2, 1, 3, 4).flatten(0, 1)
    frames = (vae.decode(flat).sample / 2 + 0.5).clamp(0, 1)
    return frames.permute(0, 2, 3, 1).numpy()


def test_the_pipeline_is_the_plain_loop_on_the_embedded_world(one_thread):
    pipe = AnimationPipeline.from_pretrained(EMBEDDED / "base", EMBEDDED / "motion_module.safetensors")
    frames = pipe(PROMPT, num_frames=FRAMES, num_inference_steps=STEPS, seed=SEED, progress=False)[0]
    np.testing.assert_array_equal(frames, plain_loop())
