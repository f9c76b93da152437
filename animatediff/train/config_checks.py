"""What can be wrong with a training config on its own, checked when it is built: one line per mistake, before any
weights load. (What can be wrong against the base's configs is `checks.py`.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

from animatediff.errors import InputError

if TYPE_CHECKING:
    from animatediff.train.config import TrainConfig


def check_config(config: TrainConfig) -> None:
    """Raise InputError naming the first field that holds a value the trainer cannot use."""
    from animatediff.models.motion_module import DESIGNS
    from animatediff.train.config import BETA_SCHEDULES, DATA_KINDS, LOSS_WEIGHTINGS, TIMESTEP_BIASES

    choices = {
        "precision": (config.precision, ("no", "fp16", "bf16")),
        "model.prediction_type": (config.model.prediction_type, ("auto", "epsilon", "v_prediction")),
        "model.scratch.version": (config.model.scratch.version, ("v1", "v2", "v3")),
        "model.scratch.design": (config.model.scratch.design, DESIGNS),
        "data.kind": (config.data.kind, DATA_KINDS),
        "optim.loss_weighting": (config.optim.loss_weighting, LOSS_WEIGHTINGS),
        "optim.timestep_bias": (config.optim.timestep_bias, TIMESTEP_BIASES),
        "controlnet.kind": (config.controlnet.kind, ("controlnet", "sparsectrl", "t2i_adapter")),
        "controlnet.annotator": (config.controlnet.annotator, ("canny", "none", "rgb")),
    }
    if config.model.convert_to_version is not None:
        choices["model.convert_to_version"] = (config.model.convert_to_version, ("v1", "v2", "v3"))
    for name, (value, allowed) in choices.items():
        if value not in allowed:
            raise InputError(f"{name}: {value!r} is not one of {', '.join(map(repr, allowed))}")
    positive = {
        "data.num_frames": config.data.num_frames,
        "data.stride": config.data.stride,
        "data.resolution": config.data.resolution,
        "optim.batch_size": config.optim.batch_size,
        "optim.gradient_accumulation_steps": config.optim.gradient_accumulation_steps,
        "optim.max_steps": config.optim.max_steps,
        "optim.max_nonfinite_steps": config.optim.max_nonfinite_steps,
        "lora.rank": config.lora.rank,
        "adapter.rank": config.adapter.rank,
        "controlnet.max_keyframes": config.controlnet.max_keyframes,
        "validation.num_frames": config.validation.num_frames,
    }
    for name, value in positive.items():
        if value < 1:
            raise InputError(f"{name} must be at least 1, got {value}")
    counts = {
        "data.num_workers": config.data.num_workers,
        "optim.warmup_steps": config.optim.warmup_steps,
        "logging.every": config.logging.every,
        "checkpoint.every": config.checkpoint.every,
        "checkpoint.keep_last": config.checkpoint.keep_last,
        "validation.every": config.validation.every,
    }
    for name, value in counts.items():
        if value < 0:
            raise InputError(f"{name} must be at least 0, got {value}")
    if config.optim.snr_gamma <= 0 or config.optim.max_loss_weight < 1:
        raise InputError("optim.snr_gamma must be positive and optim.max_loss_weight at least 1")
    if not 0 < config.optim.timestep_bias_portion <= 1 or config.optim.timestep_bias_multiplier <= 0:
        raise InputError(
            "optim.timestep_bias_portion must be in (0, 1] and optim.timestep_bias_multiplier positive, got "
            f"{config.optim.timestep_bias_portion} and {config.optim.timestep_bias_multiplier}"
        )
    if not 0.0 <= config.optim.caption_dropout <= 1.0:
        raise InputError(f"optim.caption_dropout must be in [0, 1], got {config.optim.caption_dropout}")
    if config.optim.beta_schedule not in BETA_SCHEDULES:
        raise InputError(
            f"optim.beta_schedule: {config.optim.beta_schedule!r} is not one of {', '.join(BETA_SCHEDULES)}"
        )
    if not 0 < config.optim.beta_start < config.optim.beta_end < 1:
        raise InputError(
            f"optim.beta_start {config.optim.beta_start} and optim.beta_end {config.optim.beta_end} must satisfy "
            "0 < beta_start < beta_end < 1"
        )
    if not config.model.base:
        raise InputError("model.base is required: a Stable Diffusion 1.x or SDXL diffusers folder or hub id")
    if config.lora.enabled and not config.model.init_motion_module:
        raise InputError(
            "lora.enabled needs model.init_motion_module: a MotionLoRA adapts a trained motion module "
            "(a fresh module's zero proj_out would give its attention no gradient)"
        )
    modes = [name for name in ("lora", "controlnet", "adapter") if getattr(config, name).enabled]
    if len(modes) > 1:
        raise InputError(f"{' and '.join(f'{m}.enabled' for m in modes)}: a run trains one of them")
    if config.adapter.enabled and config.model.adapter_lora:
        raise InputError("adapter.enabled trains a domain adapter on the plain base; unset model.adapter_lora")
    if config.controlnet.enabled:
        kind, annotator = config.controlnet.kind, config.controlnet.annotator
        if (kind, annotator) in (("controlnet", "rgb"), ("t2i_adapter", "rgb"), ("sparsectrl", "none")):
            raise InputError(
                f"controlnet.annotator {annotator!r} is for "
                f"{'a SparseCtrl encoder' if annotator == 'rgb' else 'a ControlNet'}, not controlnet.kind {kind!r}"
            )
        if not 0 <= config.controlnet.first_frame_rate <= 1:
            raise InputError(f"controlnet.first_frame_rate must be in [0, 1], got {config.controlnet.first_frame_rate}")
        if not config.model.init_motion_module:
            raise InputError(
                "controlnet.enabled needs model.init_motion_module: the ControlNet learns to steer a trained "
                "motion module, which stays frozen"
            )
        if config.validation.every and config.validation.prompts:
            raise InputError(
                "validation animations need control images, which a ControlNet run's validation does not take; "
                "set validation.every=0 and animate its exported controlnet/ with `animatediff generate`"
            )
