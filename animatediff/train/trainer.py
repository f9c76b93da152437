"""Training motion modules (and MotionLoRAs) on video clips with Hugging Face Accelerate.

The recipe is the paper's (Sec. 4.2) as released in github.com/guoyww/AnimateDiff (`train.py`): the image
model (UNet, VAE, text encoder) is frozen; clips are VAE-encoded (× scaling factor), noised at one random
timestep per video on linear betas, captions dropped to "" with probability 0.1, and the motion modules learn
to predict the noise (or v) under an fp32 MSE. Accelerate supplies one GPU, multi-GPU DDP, multi-node and
DeepSpeed/FSDP (through `accelerate config`), mixed precision and trackers; nothing of that is rebuilt here.

Randomness: every draw of the step (VAE posterior sample, caption dropout, noise, timesteps) comes from one
generator per process seeded with seed + rank and saved in checkpoints, so a resumed run continues exactly.

In ControlNet mode (`controlnet.enabled`) the motion module is frozen too and a ControlNet learns to steer the
animated UNet from per-frame control images (`controlnet.py`), a SparseCtrl encoder from a condition on a few frames
(`sparse_ctrl.py`), or a T2I-Adapter from per-frame control images (`t2i_adapter.py`). In domain adapter mode
(`adapter.enabled`, paper Sec. 4.1) the motion modules are off and a LoRA on the image UNet's attention learns from
one frame of each clip (`adapter.py`); `model.adapter_lora` merges such an adapter into the frozen base for the
motion stage.

A step whose loss or gradients are not finite is skipped and counted (`nonfinite.py`); too many in a row stop the
run, and no checkpoint is written of non-finite weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NoReturn

import torch
import torch.nn.functional as F
from diffusers import ControlNetModel
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from animatediff.base_model import base_folder, load_base, read_component_config, read_traits
from animatediff.errors import InputError
from animatediff.extras import require
from animatediff.io.outputs import check_output_folder
from animatediff.models import inflate_unet
from animatediff.pipeline.annotators import check_annotator
from animatediff.sampling import denoising_target
from animatediff.train.adapter import export_adapter, pick_frames
from animatediff.train.captions import CaptionEncoder, added_conditioning
from animatediff.train.checkpoints import checkpoints_root, list_checkpoints, resolve_resume, save_checkpoint
from animatediff.train.checks import (
    check_frames,
    check_frozen,
    check_resolution,
    check_tracker,
    check_zero_snr,
)
from animatediff.train.config import TrainConfig, flat_config
from animatediff.train.controlnet import control_inputs, export_control
from animatediff.train.datasets import ClipLoader, build_dataset
from animatediff.train.export import export_trained
from animatediff.train.modes import keep_trained_weights, set_up_mode
from animatediff.train.motion_init import init_motion_modules
from animatediff.train.noise import draw_timesteps, noise_scheduler, timestep_weights
from animatediff.train.nonfinite import NonFiniteGuard, TrainingDiverged, any_process, grads_finite, weights_finite
from animatediff.train.optimizer import optimizer_and_schedule
from animatediff.train.reporting import describe, step_logs
from animatediff.train.resume import check_resumable, load_checkpoint, scheduler_state, verify_checkpoint

WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
StepCallback = Callable[["Trainer", int, float], None]


class Trainer:
    """One training run: build everything from the config (failing early on bad input), then `train()`."""

    def __init__(
        self, config: TrainConfig, on_step: StepCallback | None = None, dataset: Dataset | None = None
    ) -> None:
        """`on_step(trainer, step, loss)` runs after every optimizer step. `dataset`: the clips to train on when
        `config.data.kind` is 'custom' ({"pixel_values": (f, 3, H, W) in [-1, 1], "text": str} items, map-style or
        iterable), in place of a dataset the config describes."""
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration, set_seed

        self.config = c = config
        self.on_step = on_step
        check_tracker(c.logging.report_to)
        check_output_folder(Path(c.output_dir) / "checkpoints", "output_dir")  # before minutes of training
        if c.lora.enabled or c.adapter.enabled:
            require("peft", "lora.enabled (MotionLoRA training)" if c.lora.enabled else "adapter.enabled")
        if c.controlnet.enabled and c.controlnet.annotator == "canny":
            check_annotator(c.controlnet.annotator, "controlnet.annotator")
        self.accelerator = acc = Accelerator(
            mixed_precision=c.precision,
            gradient_accumulation_steps=c.optim.gradient_accumulation_steps,
            log_with=None if c.logging.report_to == "none" else c.logging.report_to,
            project_config=ProjectConfiguration(project_dir=c.output_dir, logging_dir=str(Path(c.output_dir) / "logs")),
            cpu=c.cpu,
        )
        if acc.state.deepspeed_plugin is not None:
            # DeepSpeed reads the micro-batch from prepared DataLoaders; ours is built per epoch, so say it here.
            ds_config = acc.state.deepspeed_plugin.deepspeed_config
            if ds_config.get("train_micro_batch_size_per_gpu", "auto") == "auto":
                ds_config["train_micro_batch_size_per_gpu"] = c.optim.batch_size

        # 1. Everything that can be wrong with the inputs, before any weights are loaded.
        if (dataset is None) != (c.data.kind != "custom"):
            raise InputError(
                "data.kind 'custom' trains on the dataset given to Trainer(config, dataset=...), and only then"
                if dataset is None
                else f"a dataset was given to the Trainer, so data.kind must be 'custom', not {c.data.kind!r}"
            )
        prediction = None if c.model.prediction_type == "auto" else c.model.prediction_type
        folder = base_folder(c.model.base)
        self.traits = traits = read_traits(folder, prediction, c.optim.zero_terminal_snr)
        check_zero_snr(traits)
        if c.controlnet.enabled and traits.family == "sdxl":
            raise InputError(
                "controlnet.enabled: ControlNet, SparseCtrl and T2I-Adapter training take an SD1.x base, not SDXL"
            )
        self.prediction_type = traits.prediction_type
        set_seed(c.seed)  # the same fresh motion-module weights on every process
        motion, self.motion_origin = init_motion_modules(c.model, read_component_config(folder, "unet"))
        check_frames(c, motion.max_frames)
        check_resolution(c, traits)
        self.resume_path = resolve_resume(c)
        resume_state = None
        if self.resume_path is not None:
            resume_state = check_resumable(self.resume_path, c, acc.num_processes)
            verify_checkpoint(self.resume_path, acc.process_index)
        adapter = None
        if c.model.adapter_lora:
            from animatediff.formats.motion_lora import load_adapter_lora

            adapter = load_adapter_lora(c.model.adapter_lora)
        if dataset is None:
            dataset = build_dataset(c.data, c.seed, acc.process_index, acc.num_processes)
        self.dataset = dataset
        self.loader = ClipLoader(
            self.dataset, c.optim.batch_size, c.data.num_workers, c.seed, acc.process_index, acc.num_processes
        )

        # 2. The frozen image model.
        parts = load_base(folder)
        if adapter is not None:
            from animatediff.formats.lora import LoraMerger

            LoraMerger({"unet": parts.unet}).add("adapter", adapter, c.model.adapter_lora_scale)
        weight_dtype = WEIGHT_DTYPES[c.precision]
        self.tokenizer, self.tokenizer_2 = parts.tokenizer, parts.tokenizer_2
        self.text_encoder = parts.text_encoder.requires_grad_(False).eval().to(acc.device, weight_dtype)
        self.text_encoder_2 = parts.text_encoder_2  # SDXL's second text encoder; None for SD1.x
        if self.text_encoder_2 is not None:
            self.text_encoder_2.requires_grad_(False).eval().to(acc.device, weight_dtype)
        self.captions = CaptionEncoder(self.tokenizer, self.text_encoder, self.tokenizer_2, self.text_encoder_2)
        self.vae = parts.vae.requires_grad_(False).eval().to(acc.device, weight_dtype)
        parts.unet.requires_grad_(False).eval().to(weight_dtype)
        self.motion_config = motion.config
        self.unet = inflate_unet(parts.unet, motion).to(acc.device)  # motion modules stay fp32

        # 3. What trains: the whole motion module, LoRA adapters on its attention, a ControlNet, or a domain adapter.
        mode = set_up_mode(c, self.unet, parts.unet, traits.vae_scale_factor, acc.device)
        self.controlnet, self.trainable, self.lora_scale = mode.controlnet, mode.trainable, mode.lora_scale
        self.is_trained_key, trained, frozen = mode.is_trained_key, mode.trained, mode.frozen
        frozen.update(vae=self.vae, text_encoder=self.text_encoder)
        check_frozen({**frozen, "text_encoder_2": self.text_encoder_2}, trained, self.trainable)
        if c.gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            if isinstance(self.controlnet, ControlNetModel):  # not SparseCtrl's: its motion hooks see no frames then
                self.controlnet.enable_gradient_checkpointing()
        self.noise_scheduler = noise_scheduler(c.optim, traits.prediction_type, traits.zero_snr)

        # 4. Optimizer and schedule, the optimizer handed to Accelerate with the model. The schedule is not prepared:
        # Accelerate would step it once per process per step; it is stepped once per optimizer step.
        optimizer, self.lr_scheduler = optimizer_and_schedule(self.trainable, c.optim)
        # Its state is saved in trainer_state.json, not registered with Accelerate (which would pickle it).
        self.model, self.optimizer = acc.prepare(trained, optimizer)
        # Checkpoints hold the trained modules only; the frozen base is the base folder's business.
        acc.register_save_state_pre_hook(partial(keep_trained_weights, self.is_trained_key))
        if acc.is_main_process and c.logging.report_to != "none":
            acc.init_trackers(c.logging.project_name, config=flat_config(c))

        # 5. Per-process randomness, then the saved state if resuming.
        set_seed(c.seed + acc.process_index)
        self.generator = torch.Generator().manual_seed(c.seed + acc.process_index)
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        # Under fp16 a grad scaler skips overflowing steps itself (DeepSpeed's own loss scaler likewise).
        scaled = acc.scaler is not None or (acc.state.deepspeed_plugin is not None and c.precision == "fp16")
        self.guard = NonFiniteGuard(c.optim.max_nonfinite_steps, scaled)
        if resume_state is not None:
            own = load_checkpoint(acc, self.model, self.optimizer, self.resume_path, self._trained_keys(trained))
            self.lr_scheduler.load_state_dict(scheduler_state(self.resume_path, resume_state))
            self.guard.load_state_dict(resume_state.get("nonfinite", {}))
            self.generator.set_state(own["generator"])
            self.step, self.epoch, self.batch_in_epoch = resume_state["step"], own["epoch"], own["batch_in_epoch"]
        self._saved_step = self.step if resume_state is not None else -1
        self._checkpoint_due = False

    # ----------------------------------------------------------------------------------------------- checks

    def _trained_keys(self, trained: torch.nn.Module) -> list[str]:
        return [k for k in trained.state_dict() if self.is_trained_key(k)]

    # ------------------------------------------------------------------------------------------------ a step

    @torch.no_grad()
    def encode_videos(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(b, f, 3, H, W) in [-1, 1] → posterior samples × scaling factor, (b, 4, f, H/8, W/8)."""
        b, f = pixel_values.shape[:2]
        # Channels-last whatever layout the loader gave: a DataLoader worker collates into contiguous memory, the
        # main process keeps the items' layout (channels-last from HWC frames), and the two layouts take different
        # convolution kernels, whose last bits differ; so a run would depend on num_workers.
        flat = pixel_values.flatten(0, 1).to(self.accelerator.device, self.vae.dtype)
        flat = flat.contiguous(memory_format=torch.channels_last)
        latents = torch.cat(
            [self.vae.encode(chunk).latent_dist.sample(generator=self.generator) for chunk in flat.split(64)]
        )
        latents = latents * self.vae.config.scaling_factor
        return latents.unflatten(0, (b, f)).transpose(1, 2)

    def encode_text(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(the captions' context, SDXL's pooled captions or None)."""
        return self.captions.encode(texts)

    def loss_and_backward(self, batch: dict) -> torch.Tensor:
        """One micro-batch: noise the clips, predict, fp32 MSE, backward. Returns the (unscaled) loss."""
        pixels = batch["pixel_values"]
        if self.config.adapter.enabled:
            pixels = pick_frames(pixels, self.generator)  # the domain adapter learns from single frames
        b, f = pixels.shape[:2]
        if f > self.unet.max_frames:
            raise InputError(f"a batch has {f} frames; the motion module holds at most {self.unet.max_frames}")
        device = self.accelerator.device
        latents = self.encode_videos(pixels)
        drop = torch.rand(b, generator=self.generator) < self.config.optim.caption_dropout
        texts = ["" if d else text for d, text in zip(drop.tolist(), batch["text"])]
        context, pooled = self.encode_text(texts)
        noise = torch.randn(latents.shape, generator=self.generator).to(device, latents.dtype)
        timesteps = draw_timesteps(b, self.config.optim, self.generator).to(device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        target = denoising_target(self.noise_scheduler, latents, noise, timesteps)
        inputs = (noisy, timesteps, context)
        if self.controlnet is not None:
            inputs += control_inputs(self.controlnet, self.config.controlnet, batch, latents, self.generator)
        # Frames stay folded through backward: gradient checkpointing re-runs the hooks there.
        with self.unet.fold_frames(f):
            prediction = self.model(*inputs, **added_conditioning(pooled, noisy, self.traits.vae_scale_factor))
            if self.config.optim.loss_weighting == "none":
                loss = F.mse_loss(prediction.float(), target.float())
            else:
                per_clip = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3, 4))
                weights = timestep_weights(self.noise_scheduler, timesteps, self.prediction_type, self.config.optim)
                loss = (per_clip * weights.to(per_clip.device)).mean()
            self.accelerator.backward(loss)
        return loss.detach()

    def micro_step(self, batch: dict) -> tuple[torch.Tensor, bool]:
        """One micro-batch, and at the end of an accumulation window the optimizer step. Returns (the loss,
        whether the optimizer step was skipped as non-finite on some process)."""
        acc, optim = self.accelerator, self.config.optim
        with acc.accumulate(self.model):
            loss = self.loss_and_backward(batch)
            self.guard.observe_loss(loss)
            skip = False
            if acc.sync_gradients:
                finite = None if self.guard.scaled else grads_finite(self.trainable)
                skip = self.guard.step_is_nonfinite(acc, finite)
                if not skip and optim.max_grad_norm > 0:
                    acc.clip_grad_norm_(self.trainable, optim.max_grad_norm)
            if not skip:
                self.optimizer.step()
                if acc.sync_gradients and not acc.optimizer_step_was_skipped:
                    self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return loss, skip

    # --------------------------------------------------------------------------------------------- the loop

    def train(self, stop_after: int | None = None) -> dict:
        """Train to `optim.max_steps` optimizer steps; `stop_after` ends early without a final checkpoint (as if
        killed). Returns {"step", "loss", "checkpoint"}."""
        c, acc = self.config, self.accelerator
        if acc.is_main_process and c.logging.progress:
            print(describe(self))
        bar = tqdm(
            total=c.optim.max_steps,
            initial=self.step,
            desc="training",
            unit="step",
            disable=not (acc.is_main_process and c.logging.progress),
        )
        (self.controlnet if self.controlnet is not None else self.unet.motion_modules).train()
        done = self.step >= c.optim.max_steps
        # A run resumed at its last step trains nothing; its result is the checkpoint it resumed from.
        loss, checkpoint = math.nan, self.resume_path if done else None
        while not done:
            batches = 0
            for batch in self.loader.epoch(self.epoch, self.batch_in_epoch):
                batches += 1
                loss_t, skipped = self.micro_step(batch)
                self.batch_in_epoch += 1
                if not acc.sync_gradients:
                    continue
                self.step += 1
                self.guard.record(skipped, self.step, log=acc.is_main_process)
                loss = float(loss_t)
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}")
                self._after_step(loss_t)
                if self.on_step is not None:
                    self.on_step(self, self.step, loss)
                if self.guard.diverged:
                    bar.close()
                    self._stop(self.guard.diverged_error(self.step, self._newest_checkpoint()))
                if c.checkpoint.every and self.step % c.checkpoint.every == 0:
                    self._checkpoint_due = True
                # Not while non-finite steps run on: the checkpoint waits for the next finite step.
                if self._checkpoint_due and self.guard.streak == 0 and self.step < c.optim.max_steps:
                    checkpoint = self.save()
                if self.step >= c.optim.max_steps or (stop_after is not None and self.step >= stop_after):
                    done = True
                    break
            else:
                if batches == 0 and self.batch_in_epoch == 0:
                    raise InputError(f"epoch {self.epoch} gave no batch: is the dataset (or this rank's share) empty?")
                self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        bar.close()
        if self.step >= c.optim.max_steps and self._saved_step != self.step:
            checkpoint = self.save()
        acc.end_training()
        return {"step": self.step, "loss": loss, "checkpoint": checkpoint}

    def _after_step(self, loss: torch.Tensor) -> None:
        c, acc = self.config, self.accelerator
        if c.logging.every and self.step % c.logging.every == 0:
            acc.log(step_logs(self, loss), step=self.step)
        if c.validation.every and c.validation.prompts and self.step % c.validation.every == 0:
            if acc.is_main_process:
                self.validate()
            acc.wait_for_everyone()

    def _newest_checkpoint(self) -> str | None:
        found = list_checkpoints(checkpoints_root(self.config))
        return str(found[-1]) if found else None

    def _stop(self, error: TrainingDiverged) -> NoReturn:
        """End the run with `error`: its counts logged and the trackers closed first."""
        self.accelerator.log({"train/nonfinite_steps": self.guard.total}, step=self.step)
        self.accelerator.end_training()
        raise error

    # ------------------------------------------------------------------------------- validation and saving

    def validate(self) -> list[Path]:
        """Animate the validation prompts with the current motion module; GIFs under output_dir/validation."""
        from animatediff.train.validation import validate_trainer

        return validate_trainer(self)

    def export(self, folder: Path) -> None:
        """The trained weights alone, loadable by `animatediff generate`: official file + diffusers folder (a
        ControlNet run: the ControlNet's diffusers folder)."""
        if self.controlnet is not None:
            export_control(self.accelerator, self.model, self.controlnet, folder)
            return
        if self.config.adapter.enabled:
            export_adapter(self.accelerator, self.model, folder, self.lora_scale)
            return
        scale = self.lora_scale if self.config.lora.enabled else None
        export_trained(self.accelerator, self.model, self.unet.motion_modules, folder, scale)

    def save(self) -> Path | None:
        """Write a checkpoint of this step; refused (TrainingDiverged) when the trained weights are not finite, so
        that no such checkpoint is written and keep_last prunes none of the good ones for it."""
        if any_process(self.accelerator, ~weights_finite(self.trainable)):
            newest = self._newest_checkpoint()
            kept = f"the newest checkpoint, {newest}, is kept" if newest else "no checkpoint was written"
            self._stop(
                TrainingDiverged(
                    f"training diverged: the trained weights hold non-finite values at step {self.step}; not "
                    f"writing a checkpoint of them ({kept}). Lower optim.learning_rate or set optim.max_grad_norm"
                )
            )
        state = {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "nonfinite": self.guard.state_dict(),
        }
        own = {"generator": self.generator.get_state(), "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch}
        path = save_checkpoint(self.accelerator, self.config, state, own, self.export)
        self._saved_step = self.step
        self._checkpoint_due = False
        return path


def train(config: TrainConfig, on_step: StepCallback | None = None, dataset: Dataset | None = None) -> dict:
    """Build a Trainer for `config` (and `dataset`, for data.kind 'custom') and run it to the end."""
    return Trainer(config, on_step, dataset).train()
