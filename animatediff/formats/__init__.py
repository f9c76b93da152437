from animatediff.formats.motion_module_files import (
    convert_motion_module,
    load_motion_modules,
    save_motion_modules,
)

__all__ = ["convert_motion_module", "load_motion_modules", "save_motion_modules"]
