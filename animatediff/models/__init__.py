from animatediff.models.inflate import AnimationUNet, inflate_unet
from animatediff.models.motion_adapter import MotionModuleConfig, MotionModules
from animatediff.models.motion_module import MotionModule

__all__ = ["AnimationUNet", "MotionModule", "MotionModuleConfig", "MotionModules", "inflate_unet"]
