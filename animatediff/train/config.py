"""Training configuration: typed dataclasses loaded from YAML, with `key.sub=value` overrides.

Defaults are the official AnimateDiff training recipe (github.com/guoyww/AnimateDiff, `configs/training/`):
AdamW 1e-4, betas (0.9, 0.999), weight decay 1e-2, eps 1e-8, constant LR, grad clip 1.0, batch 4 per GPU,
16 frames at stride 4, 256 px, caption dropout 0.1, linear betas 0.00085 → 0.012.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from animatediff.config_values import dataclass_from_dict, merge, parse_overrides
from animatediff.errors import InputError, InputNotFound

LOSS_WEIGHTINGS = ("none", "min_snr", "truncated_snr")
TIMESTEP_BIASES = ("none", "later", "earlier")
DATA_KINDS = ("webvid", "folder", "shards", "synthetic", "custom")


BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid")
"""The beta schedules diffusers' DDPMScheduler builds."""


@dataclass
class ScratchMotionConfig:
    """Shape of a motion module trained from scratch; channels and layers come from the base UNet."""

    version: str = "v3"
    """'v1', 'v2' or 'v3': v2 adds a mid-block module; v1 uses clip-wide ResNet norms and 24 positions."""
    max_frames: int | None = None
    """Length of the position encoding; None: 24 for v1, 32 otherwise."""
    num_attention_heads: int = 8
    """Heads of each temporal attention (the released modules use 8)."""
    num_transformer_blocks: int = 1
    """Transformer blocks per module (the released modules use 1)."""
    norm_num_groups: int = 32
    """Groups of each module's GroupNorm."""
    design: str = "transformer"
    """'transformer' (the paper's temporal transformer) or 'convolution' (kernel-3 temporal convolutions of about the
    same parameter count: the module-design ablation, Sec. 5.3). A module from `init_motion_module` keeps its own."""


@dataclass
class ModelConfig:
    """What is trained, and on top of which frozen base."""

    base: str = ""
    """Stable Diffusion 1.x or SDXL in the diffusers folder layout (unet/, vae/, text_encoder/, tokenizer/; SDXL also
    text_encoder_2/, tokenizer_2/) or a hub id."""
    init_motion_module: str | None = None
    """Start from this motion module (official file, diffusers folder or hub id); None: from scratch (zero proj_out)."""
    convert_to_version: str | None = None
    """With `init_motion_module`: rebuild it as this version first (e.g. 'v2' adds a fresh mid-block module and
    32 positions to a v1 file); None keeps the file's own version."""
    scratch: ScratchMotionConfig = field(default_factory=ScratchMotionConfig)
    """Shape of a new motion module (used when `init_motion_module` is None, and for `convert_to_version`)."""
    prediction_type: str = "auto"
    """'epsilon', 'v_prediction', or 'auto': what the base model's scheduler config says (epsilon if absent)."""
    adapter_lora: str | None = None
    """A domain adapter (official v3 layout or diffusers LoRA, as `--adapter-lora` takes) merged into the frozen base
    before training: the motion stage of the paper's recipe trains over base + adapter. None: the plain base."""
    adapter_lora_scale: float = 1.0
    """α of `adapter_lora` while training (the paper trains at 1)."""


@dataclass
class DataConfig:
    """Where clips come from and how they are cut."""

    kind: str = "webvid"
    """'webvid' (CSV + folder of <videoid>.mp4), 'folder' (videos with .txt captions), 'shards' (WebDataset tars),
    'synthetic' (moving squares drawn in memory, for smoke tests and benchmarks), or 'custom' (the dataset handed to
    `Trainer(config, dataset=...)` in Python; the fields below still set the frames, size and workers)."""
    csv: str | None = None
    """WebVid CSV with columns videoid, name (the caption), page_dir."""
    video_folder: str | None = None
    """Folder of videos: `<videoid>.mp4` for 'webvid'; videos beside same-named .txt captions for 'folder'."""
    shards: list[str] = field(default_factory=list)
    """Tar shard paths or globs for 'shards' (as written by `animatediff prepare`)."""
    num_frames: int = 16
    """Frames per training clip."""
    stride: int = 4
    """Take every stride-th frame (fewer when the video is short)."""
    resolution: int = 256
    """Clips are resized and center-cropped to this square size in pixels."""
    random_flip: bool = True
    """Flip clips horizontally with probability 0.5."""
    num_workers: int = 4
    """DataLoader worker processes decoding videos."""
    synthetic_clips: int = 64
    """Number of clips of the 'synthetic' dataset."""


@dataclass
class OptimConfig:
    """Optimizer, schedule, batch and diffusion noise."""

    learning_rate: float = 1e-4
    """AdamW learning rate (per optimizer step, not scaled by the number of processes)."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    weight_decay: float = 1e-2
    """AdamW decoupled weight decay."""
    eps: float = 1e-8
    """AdamW epsilon."""
    lr_scheduler: str = "constant"
    """A diffusers schedule name: 'constant', 'constant_with_warmup', 'linear', 'cosine', ..."""
    warmup_steps: int = 0
    """Linear warmup optimizer steps (for the *_with_warmup, linear and cosine schedules)."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm of the trained parameters to this; 0 disables clipping."""
    max_nonfinite_steps: int = 5
    """Stop the run (an error, exit status 2) after this many optimizer steps in a row whose loss or gradients
    were not finite (NaN or inf on any process). Such a step is skipped: no weight update, no LR-schedule step;
    the run counts it (`train/nonfinite_steps`) and writes no checkpoint until a step is finite again. Under fp16
    the grad scaler skips its own overflowing steps as before; only a non-finite loss counts there."""
    batch_size: int = 4
    """Clips per process per micro-batch."""
    gradient_accumulation_steps: int = 1
    """Micro-batches summed into one optimizer step."""
    max_steps: int = 100_000
    """Optimizer steps to train for (counted across resumes)."""
    caption_dropout: float = 0.1
    """Probability of replacing a caption by "" (teaches the unconditional prediction used by guidance)."""
    num_train_timesteps: int = 1000
    """Diffusion timesteps; one is drawn per video, uniformly unless `timestep_bias` says otherwise."""
    beta_start: float = 0.00085
    """First beta of the noise schedule."""
    beta_end: float = 0.012
    """Last beta of the noise schedule."""
    beta_schedule: str = "linear"
    """diffusers name of the beta schedule (`BETA_SCHEDULES`); AnimateDiff trains with 'linear' (the paper's first
    version with SD's 'scaled_linear', which it reports worse)."""
    zero_terminal_snr: bool | None = None
    """Rescale the betas to zero terminal SNR (Lin et al. 2024; needs a v-prediction base); None: as the base's
    scheduler config says (`rescale_betas_zero_snr`)."""
    loss_weighting: str = "none"
    """Per-timestep weight on the ε-MSE. 'none': the paper's plain MSE. 'min_snr': min(SNR, snr_gamma)/SNR (Hang
    et al. 2023), which damps the nearly clean timesteps. 'truncated_snr': max(1, 1/SNR), at most
    `max_loss_weight`, which weighs a clip's x0 error by max(SNR, 1) (Salimans & Ho 2022): the noisiest timesteps,
    where a clip's layout and motion are decided, count as much as the rest instead of ~SNR ≈ 0.003 as much."""
    snr_gamma: float = 5.0
    """γ of 'min_snr'."""
    max_loss_weight: float = 1000.0
    """Upper bound on the 'truncated_snr' weight (1/SNR grows without bound as SNR → 0)."""
    timestep_bias: str = "none"
    """Which timesteps are drawn more often (diffusers' `timestep_bias_strategy`): 'none' (uniform, the paper's),
    'later' (the noisiest `timestep_bias_portion` of the schedule, where a clip's layout and motion are decided)
    or 'earlier' (the cleanest, where detail is)."""
    timestep_bias_portion: float = 0.25
    """Fraction of the schedule's timesteps that `timestep_bias` favours, in (0, 1]."""
    timestep_bias_multiplier: float = 1.0
    """How much more often a favoured timestep is drawn than the others (1: no bias; diffusers' default)."""


@dataclass
class LoRAConfig:
    """MotionLoRA: train low-rank adapters on the motion modules' attention instead of the whole module."""

    enabled: bool = False
    """Train a MotionLoRA (needs `model.init_motion_module`); the motion module itself stays frozen."""
    rank: int = 64
    """LoRA rank (the released MotionLoRAs use 64)."""
    alpha: float | None = None
    """LoRA alpha; the update is (alpha / rank)·up·down. None: equal to rank (scale 1, the official convention)."""


@dataclass
class AdapterTrainConfig:
    """Domain adapter mode (paper Sec. 4.1): a LoRA on the image UNet's spatial attention, trained on one random frame
    of each clip with the whole base frozen and no motion module; `generate --adapter-lora` scales it at inference."""

    enabled: bool = False
    """Train a domain adapter instead of a motion module; checkpoints export `domain_adapter.safetensors` (official
    v3 layout) and `domain_adapter_diffusers/` (diffusers LoRA)."""
    rank: int = 32
    """LoRA rank; at most the narrowest attention layer's width."""
    alpha: float | None = None
    """LoRA alpha; the update is (alpha / rank)·up·down. None: equal to rank (scale 1)."""


@dataclass
class ControlNetTrainConfig:
    """ControlNet mode: train a ControlNet, a SparseCtrl encoder or a T2I-Adapter, that steers the frozen base and
    motion module."""

    enabled: bool = False
    """Train a ControlNet, SparseCtrl encoder or T2I-Adapter (needs `model.init_motion_module`, which stays frozen
    with the base) instead of the motion module; checkpoints export it where `generate` takes it: a ControlNet as the
    diffusers folder `controlnet/` (`--controlnet`), a SparseCtrl encoder as `sparsectrl.safetensors` and
    `sparsectrl_diffusers/` (`--sparsectrl`), a T2I-Adapter as the diffusers folder `t2i_adapter/` (`--controlnet`)."""
    kind: str = "controlnet"
    """'controlnet' (a control image on every frame), 'sparsectrl' (SparseCtrl: a condition on a few frames) or
    't2i_adapter' (a T2I-Adapter: a control image on every frame, exported as the diffusers folder `t2i_adapter/`)."""
    init: str | None = None
    """Start from this ControlNet or SparseCtrl encoder for the base (a diffusers folder, hub id or single file);
    None: a copy of the base UNet's encoder and middle with zero output convolutions (ControlNet's own start)."""
    annotator: str = "canny"
    """How the control images are made of each clip: 'canny' (Canny edges of the frames, as `--control-from-video
    canny` makes them; needs OpenCV), 'none' (ControlNet only: the dataset's items carry `control_values`,
    (f, 3, H, W) in [0, 1], for data.kind 'custom'), or 'rgb' (SparseCtrl only: the frames themselves, as VAE
    latents: the RGB encoder, for image-to-video)."""
    max_keyframes: int = 3
    """SparseCtrl: a training clip carries the condition on 1 to this many random frames."""
    first_frame_rate: float = 0.5
    """SparseCtrl: how often frame 0 is among a training clip's keyframes (image-to-video)."""


@dataclass
class LoggingConfig:
    """Trackers and console output."""

    report_to: str = "tensorboard"
    """An accelerate tracker ('tensorboard', 'wandb', 'comet_ml', 'mlflow', 'aim', 'all') or 'none'."""
    project_name: str = "animatediff-train"
    """Run name given to the trackers."""
    every: int = 10
    """Log loss and learning rate every this many optimizer steps."""
    progress: bool = True
    """Show a tqdm progress bar on the main process."""


@dataclass
class CheckpointConfig:
    """Periodic checkpoints and resuming."""

    every: int = 1000
    """Save a checkpoint every this many optimizer steps (and always at the end); 0: only at the end."""
    keep_last: int = 3
    """Keep this many most recent checkpoints; 0 keeps all."""
    resume_from: str | None = None
    """A checkpoint folder, 'latest' (the newest under output_dir/checkpoints, if any), or None."""


@dataclass
class ValidationConfig:
    """Sample animations now and then while training."""

    every: int = 0
    """Generate validation animations every this many optimizer steps; 0 disables."""
    prompts: list[str] = field(default_factory=list)
    """One animation per prompt."""
    negative_prompt: str = ""
    """Negative prompt for every validation animation."""
    num_frames: int = 16
    """Frames per validation animation."""
    resolution: int = 256
    """Square size of validation animations in pixels."""
    num_inference_steps: int = 25
    """DDIM steps per validation animation."""
    guidance_scale: float | None = None
    """Classifier-free guidance scale; None takes the base's own (`BaseTraits.guidance_scale`: what its
    animatediff.json states, else 7.5)."""
    seed: int = 42
    """Seed of the validation noise (the same every time, so animations are comparable across steps)."""
    fps: float = 8.0
    """Frame rate of the saved GIFs."""


@dataclass
class TrainConfig:
    """Everything one training run needs."""

    output_dir: str = "runs/motion-module"
    """Checkpoints, exported modules, logs and validation animations go here."""
    seed: int = 42
    """Global seed; process r seeds its noise and timestep draws with seed + r."""
    precision: str = "no"
    """Mixed precision: 'no' (fp32), 'fp16' (autocast + grad scaler) or 'bf16'. Trained weights stay fp32."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward (less memory, about a third more compute)."""
    cpu: bool = False
    """Train on CPU even when a GPU is present (tests; multi-process CPU runs use gloo)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Base model and motion module."""
    data: DataConfig = field(default_factory=DataConfig)
    """Training clips."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimizer, batch and noise schedule."""
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    """MotionLoRA mode."""
    adapter: AdapterTrainConfig = field(default_factory=AdapterTrainConfig)
    """Domain adapter mode."""
    controlnet: ControlNetTrainConfig = field(default_factory=ControlNetTrainConfig)
    """ControlNet mode."""
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    """Trackers and progress bar."""
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    """Checkpoints and resuming."""
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    """Periodic validation animations."""

    def __post_init__(self) -> None:
        from animatediff.train.config_checks import check_config

        check_config(self)

    def to_dict(self) -> dict:
        return _plain(dataclasses.asdict(self))


def _plain(value):  # noqa: ANN001, ANN202 - tuples → lists, so the dict is YAML/JSON clean
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_from_dict(values: dict) -> TrainConfig:
    """A validated TrainConfig from nested plain values; unknown keys are named with the nearest known key."""
    return dataclass_from_dict(TrainConfig, values)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (or start from defaults when `path` is None) and apply `key.sub=value` overrides."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise InputNotFound(f"training config not found: {path}")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise InputError(f"{path}: not valid YAML ({err})") from None
        if not isinstance(values, dict):
            raise InputError(f"{path}: expected a mapping of config sections, got {type(values).__name__}")
    return config_from_dict(merge(values, parse_overrides(overrides or [])))


def flat_config(config: TrainConfig) -> dict[str, object]:
    """{'optim.learning_rate': 1e-4, ...}: scalars only, as trackers' hyperparameter tables want."""
    out: dict[str, object] = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif isinstance(value, (int, float, str, bool)):
                out[prefix + key] = value
            else:
                out[prefix + key] = str(value)

    walk(config.to_dict(), "")
    return out
