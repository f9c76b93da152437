"""Training motion modules and MotionLoRAs: typed config, Accelerate trainer, checkpoints."""

from animatediff.train.config import TrainConfig, load_config
from animatediff.train.trainer import Trainer, train

__all__ = ["TrainConfig", "Trainer", "load_config", "train"]
