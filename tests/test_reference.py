"""Reference-only (`pipeline/reference.py`, `models/reference_attention.py`): prompt-travel's `controlnet_ref` loop
written out over diffusers' parts, what a zero scale pattern leaves, windows and the gradual fix, and bad input."""

import numpy as np
import pytest
import torch
from diffusers.models.attention import BasicTransformerBlock

from animatediff.errors import InputError, InputNotFound
from animatediff.pipeline.pag import PAG
from animatediff.pipeline.reference import Reference
from animatediff.sampling.gradual_latent import GradualLatent
from animatediff.sampling.schedulers import make_scheduler
from tests.diffusers_reference import diffusers_pipeline

PROMPT = "a red ball moving right"
ARGS = dict(num_frames=4, height=16, width=16, num_inference_steps=4, progress=False)


def sub_layers(block):  # noqa: ANN001, ANN201
    """A diffusers motion block's layers that a motion module follows: its transformers, or its ResNets."""
    return getattr(block, "attentions", None) or block.resnets


class PromptTravelHooks:
    """prompt-travel's hacked `BasicTransformerBlock` self-attention and its down/mid/up AdaIN, written as hooks on
    diffusers' UNetMotionModel: the spatial blocks in module order sorted by width (widest first), block i reading
    when amw > i/N; AdaIN before each sub-layer's motion module of a block whose doubled weight is at most gnw."""

    def __init__(self, unet, amw, gnw, sf, pattern, frames, attn=True, adain=False):  # noqa: ANN001
        self.mode, self.sf, self.frames, self.inside = "write", sf, frames, False
        self.pattern = [pattern[j % len(pattern)] for j in range(frames)]
        blocks = [m for n, m in unet.named_modules() if isinstance(m, BasicTransformerBlock) and "motion" not in n]
        blocks = sorted(blocks, key=lambda b: -b.norm1.normalized_shape[0])
        self.handles = []
        for i, block in enumerate(blocks):
            if attn and amw > i / len(blocks):
                bank = []
                self.handles.append(block.attn1.register_forward_hook(self.attention(bank), with_kwargs=True))
        taps = [(unet.mid_block.attentions[0], 0.0)]
        for w, block in enumerate(unet.down_blocks):
            taps += [(layer, (1 - w / len(unet.down_blocks)) * 2) for layer in sub_layers(block)]
        for w, block in enumerate(unet.up_blocks):
            taps += [(layer, w / len(unet.up_blocks) * 2) for layer in sub_layers(block)]
        for layer, weight in taps:
            if adain and gnw >= weight:
                self.handles.append(layer.register_forward_hook(self.adain([])))

    def rows(self, n):  # noqa: ANN001, ANN201
        scale = torch.tensor(self.pattern * (n // self.frames))
        uc = torch.zeros(n, dtype=torch.bool)
        uc[: self.frames] = True  # condition 0, the unconditional one
        return scale, uc

    def attention(self, bank):  # noqa: ANN001, ANN201
        def hook(module, args, kwargs, output):  # noqa: ANN001, ANN202
            if self.inside:
                return output
            n = args[0]
            if self.mode == "write":
                bank.append(n.clone())
                return output
            self.inside = True
            uc = module(n, encoder_hidden_states=torch.cat([n, *bank], dim=1))
            c = uc.clone()
            scale, uc_mask = self.rows(n.shape[0])
            c[uc_mask] = module(n[uc_mask], encoder_hidden_states=n[uc_mask])
            a = self.sf * c + (1 - self.sf) * uc
            org = module(n)
            self.inside = False
            bank.clear()
            return scale[:, None, None] * a + (1 - scale[:, None, None]) * org

        return hook

    def adain(self, bank):  # noqa: ANN001, ANN201
        def hook(module, args, output):  # noqa: ANN001, ANN202
            x = output if isinstance(output, torch.Tensor) else output[0]
            var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
            if self.mode == "write":
                bank.append((mean, var))
                return output
            mean_r, var_r = bank.pop()
            std, std_r = torch.maximum(var, torch.tensor(1e-6)) ** 0.5, torch.maximum(var_r, torch.tensor(1e-6)) ** 0.5
            x_uc = (x - mean) / std * std_r + mean_r
            x_c = x_uc.clone()
            scale, uc_mask = self.rows(x.shape[0])
            x_c[uc_mask] = x[uc_mask]
            mod = self.sf * x_c + (1 - self.sf) * x_uc
            x = scale[:, None, None, None] * mod + (1 - scale[:, None, None, None]) * x
            return x if isinstance(output, torch.Tensor) else (x, *output[1:])

        return hook


@torch.no_grad()
def prompt_travel_reference(ref, latents, image, seed, guidance, **settings):  # noqa: ANN001, ANN201
    """prompt-travel's reference loop over diffusers' parts: the picture encoded once (a posterior sample), and at
    every step fresh noise on it for every condition and frame, `add_noise` and `scale_model_input` to the step, a
    write pass with the step's text, then the guided prediction reading. The random draws come from one generator
    seeded seed + 1, as ours do (prompt-travel draws them from the global generator)."""
    own = torch.Generator().manual_seed(seed + 1)
    pixels = torch.from_numpy(image).permute(2, 0, 1)[None] * 2 - 1
    lat = ref.vae.encode(pixels).latent_dist.sample(own) * ref.vae.config.scaling_factor
    f = latents.shape[2]
    lat = lat[:, :, None].repeat(2, 1, f, 1, 1)  # (conditions, c, frames, h, w)
    cond, uncond = ref.encode_prompt(PROMPT, latents.device, 1, True, "blurry")
    text = torch.cat([uncond, cond]).repeat_interleave(f, dim=0)
    hooks = PromptTravelHooks(ref.unet, frames=f, **settings)
    x = latents * ref.scheduler.init_noise_sigma
    for t in ref.scheduler.timesteps:
        model_input = ref.scheduler.scale_model_input(torch.cat([x, x]), t)
        noise = torch.randn(lat.shape, generator=own)
        ref_xt = ref.scheduler.scale_model_input(ref.scheduler.add_noise(lat, noise, t.reshape(1)), t)
        hooks.mode = "write"
        ref.unet(ref_xt, t, text)
        hooks.mode = "read"
        eps_u, eps_c = ref.unet(model_input, t, text).sample.chunk(2)
        x = ref.scheduler.step(eps_u + guidance * (eps_c - eps_u), t, x).prev_sample
    for handle in hooks.handles:
        handle.remove()
    return ref.video_processor.postprocess_video(ref.decode_latents(x, 16), output_type="np")


CASES = {
    "attention, DDIM": ("ddim", dict(amw=1.0, gnw=1.0, sf=0.5, pattern=[1.0])),
    "attention half the layers, AdaIN, pattern, Euler": (
        "euler",
        dict(amw=0.5, gnw=1.0, sf=0.3, pattern=[1.0, 0.5], adain=True),
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_frames_equal_prompt_travels_reference_loop_over_diffusers_parts(make_pipeline, one_thread, case):
    scheduler, settings = CASES[case]
    pipe = make_pipeline("v2")
    pipe.scheduler = make_scheduler(scheduler)
    ref = diffusers_pipeline(pipe)
    image = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)
    latents = torch.randn(1, 4, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    reference = Reference(
        image, adain=settings.get("adain", False), attention_weight=settings["amw"], adain_weight=settings["gnw"],
        style_fidelity=settings["sf"], scale_pattern=settings["pattern"],
    )  # fmt: skip
    got = pipe(PROMPT, negative_prompt="blurry", latents=latents, seed=5, reference=reference, guidance_scale=7.5,
               **ARGS)  # fmt: skip
    ref.scheduler.set_timesteps(4)
    expected = prompt_travel_reference(ref, latents, image, 5, 7.5, **settings)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    plain = pipe(PROMPT, negative_prompt="blurry", latents=latents, seed=5, guidance_scale=7.5, **ARGS)
    assert np.abs(got - plain).max() > 1e-2


def test_a_zero_scale_pattern_draws_the_clip_without_it_and_the_hooks_leave(make_pipeline, one_thread):
    pipe = make_pipeline("v2")
    processors = [m.processor for m in pipe.unet.modules() if hasattr(m, "processor")]
    image = np.full((16, 16, 3), 0.8, dtype=np.float32)
    plain = pipe(PROMPT, seed=2, **ARGS)
    off = pipe(PROMPT, seed=2, reference=Reference(image, adain=True, scale_pattern=[0.0], style_fidelity=0), **ARGS)
    np.testing.assert_array_equal(off, plain)
    assert [m.processor for m in pipe.unet.modules() if hasattr(m, "processor")] == processors
    assert all(not layer._forward_hooks or len(layer._forward_hooks) <= 1 for layer in pipe.unet.unet.modules())


def test_the_reference_steers_under_windows_and_the_gradual_fix(make_pipeline, one_thread):
    pipe = make_pipeline("v2")
    image = np.zeros((16, 16, 3), dtype=np.float32)
    image[:, :, 0] = 1.0
    windowed = dict(ARGS, num_frames=6, context_length=4, context_overlap=2)
    plain = pipe(PROMPT, seed=1, **windowed)
    steered = pipe(PROMPT, seed=1, reference=Reference(image, adain=True), **windowed)
    assert steered.shape == plain.shape and np.abs(steered - plain).max() > 1e-2
    gradual = GradualLatent({0: 0.5, 0.5: 1.0}, reverse_steps=1, noise_add_count=1)
    small = pipe(PROMPT, seed=1, gradual_latent=gradual, reference=Reference(image), **ARGS)
    unsteered = pipe(PROMPT, seed=1, gradual_latent=gradual, **ARGS)
    assert small.shape == (1, 4, 16, 16, 3) and np.abs(small - unsteered).max() > 1e-2


def test_bad_input_is_one_line(make_pipeline, tmp_path):
    image = np.zeros((8, 8, 3), dtype=np.float32)
    for kwargs, message in (
        (dict(attention=False), "switch on attention, adain or both"),
        (dict(style_fidelity=1.5), "style_fidelity must be in"),
        (dict(scale_pattern=[]), "scale_pattern must be a list"),
        (dict(attention_weight="all"), "attention_weight must be a number"),
    ):
        with pytest.raises(InputError, match=message):
            Reference(image, **kwargs)
    with pytest.raises(InputNotFound, match="reference image not found"):
        Reference(tmp_path / "missing.png")
    with pytest.raises(InputError, match="reference image"):
        Reference(np.full((8, 8, 3), 2.0, dtype=np.float32))
    pipe = make_pipeline("v2")
    with pytest.raises(InputError, match="perturbed-attention guidance"):
        pipe(PROMPT, reference=Reference(image), pag=PAG(), **ARGS)


def test_an_sdxl_base_reads_the_reference_with_its_pooled_text(tmp_path, one_thread):
    """The hooks find SDXL's transformer blocks and the write pass takes SDXL's pooled text and size ids."""
    from tests.sdxl_tiny import tiny_sdxl_pipeline

    pipe = tiny_sdxl_pipeline(tmp_path)
    args = dict(num_frames=2, height=32, width=32, num_inference_steps=2, guidance_scale=7.5, seed=1, progress=False)
    image = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    steered = pipe(PROMPT, "blurry", reference=Reference(image, adain=True), **args)
    assert np.isfinite(steered).all() and np.abs(steered - pipe(PROMPT, "blurry", **args)).max() > 1e-3
