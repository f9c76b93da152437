from animatediff.models.inflate import AnimationUNet, inflate_unet
from animatediff.models.motion_module import MotionModule
from animatediff.models.motion_modules import MotionModuleConfig, MotionModules

__all__ = ["AnimationUNet", "MotionModule", "MotionModuleConfig", "MotionModules", "inflate_unet"]
