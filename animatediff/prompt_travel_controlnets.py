"""animatediff-cli-prompt-travel's `controlnet_map` read as `keyframe_controlnets` (`pipeline.keyframe_control_inputs`).

Each section that is switched on (`enable: true`) names a ControlNet by prompt-travel's name (`MODELS`: the SD1.5 models
it downloads) and takes its control images from `input_image_dir/<name>/`, PNGs named by their frame (a section whose
folder holds none is not used, as prompt-travel skips it). `controlnet_conditioning_scale`, `control_guidance_start` /
`_end`, `guess_mode`, `control_scale_list` (the spread to neighbouring frames) and the map's `is_loop` mean what they
mean there. Its preprocessors: `none`, `canny` and `lineart_standard` run here (as the annotators `none`, `canny` and
`lineart`); the others (pose, depth, the learned line art, …) need models of their own, and a section asking for one is
refused in one line: make the control images beforehand and say `use_preprocessor: false`. Memory and speed settings
(`max_samples_on_vram`, `max_models_on_vram`, `preprocess_on_gpu`), `save_detectmap` and `no_shrink_list` are dropped
(the control images are not shrunk here above 512 px, as prompt-travel shrinks pose and a few other types).
`control_region_list` confines a ControlNet to the region_map's regions it names (and the background): both halves of
their guided predictions get its residuals, as in prompt-travel (`ControlNet.regions`). prompt-travel then blends the
regions only every other step; here they are blended at every step, as it blends regions without such a list.
`animatediff_controlnet` (a local checkpoint of prompt-travel's own) is refused; `input_image_dir` is found as the
entry's other paths are. The reference-only `controlnet_ref` is not a ControlNet: switched on, it is the entry's
`reference` (`reference_section`, `pipeline/reference.py`).
"""

from __future__ import annotations

from animatediff.errors import InputError

MODELS = {
    "controlnet_tile": "lllyasviel/control_v11f1e_sd15_tile",
    "controlnet_lineart_anime": "lllyasviel/control_v11p_sd15s2_lineart_anime",
    "controlnet_ip2p": "lllyasviel/control_v11e_sd15_ip2p",
    "controlnet_openpose": "lllyasviel/control_v11p_sd15_openpose",
    "controlnet_softedge": "lllyasviel/control_v11p_sd15_softedge",
    "controlnet_shuffle": "lllyasviel/control_v11e_sd15_shuffle",
    "controlnet_depth": "lllyasviel/control_v11f1p_sd15_depth",
    "controlnet_canny": "lllyasviel/control_v11p_sd15_canny",
    "controlnet_inpaint": "lllyasviel/control_v11p_sd15_inpaint",
    "controlnet_lineart": "lllyasviel/control_v11p_sd15_lineart",
    "controlnet_mlsd": "lllyasviel/control_v11p_sd15_mlsd",
    "controlnet_normalbae": "lllyasviel/control_v11p_sd15_normalbae",
    "controlnet_scribble": "lllyasviel/control_v11p_sd15_scribble",
    "controlnet_seg": "lllyasviel/control_v11p_sd15_seg",
    "qr_code_monster_v1": "monster-labs/control_v1p_sd15_qrcode_monster",
}
"""prompt-travel's ControlNet names → the hub models it loads for SD1.5 (qr_code_monster_v2 and
controlnet_mediapipe_face lie in repositories' subfolders, which are not read as hub references here: give such a
model as a `keyframe_controlnets` item with its local folder)."""
PREPROCESSORS = {
    "controlnet_lineart_anime": "lineart_anime", "controlnet_openpose": "dwpose", "controlnet_softedge":
    "softedge_hedsafe", "controlnet_shuffle": "shuffle", "controlnet_depth": "depth_midas", "controlnet_canny":
    "canny", "controlnet_lineart": "lineart_realistic", "controlnet_mlsd": "mlsd", "controlnet_normalbae":
    "normal_bae", "controlnet_scribble": "scribble_pidsafe", "controlnet_seg": "upernet_seg",
    "controlnet_mediapipe_face": "mediapipe_face", "qr_code_monster_v1": "depth_midas",
}  # fmt: skip
"""The preprocessor prompt-travel runs for each name when a section gives none (the others: none)."""
RUN_HERE = {"none": "none", "canny": "canny", "lineart_standard": "lineart"}
"""Its preprocessors this project runs → the annotator."""
DROPPED = ("max_samples_on_vram", "max_models_on_vram", "save_detectmap", "preprocess_on_gpu", "no_shrink_list")


def keyframe_controlnets(controls: object, where: str, regions: dict[str, int] | None = None) -> list[dict]:
    """The `keyframe_controlnets` entry items of a `controlnet_map` (see the module docstring); [] when no section
    is switched on. `regions`: the region_map's names of the regions switched on → their indices in the entry."""
    if not isinstance(controls, dict):
        raise InputError(f"{where}: controlnet_map must be a mapping, got {controls!r}")
    sections = {k: v for k, v in controls.items() if isinstance(v, dict) and k != "controlnet_ref"}
    if not any(part.get("enable") is True for part in sections.values()):
        return []
    folder = controls.get("input_image_dir")
    if not isinstance(folder, str):
        raise InputError(f"{where}: controlnet_map needs input_image_dir, the folder of its control image folders")
    loop = controls.get("is_loop", True)
    known = ("input_image_dir", "is_loop", "controlnet_ref", *DROPPED)
    unknown = sorted(k for k in controls if k not in sections and k not in known)
    if unknown or not isinstance(loop, bool):
        raise InputError(f"{where}: controlnet_map: {unknown[0] if unknown else 'is_loop'!r} is not read here")
    items = []
    for name, part in sections.items():
        if part.get("enable") is True:
            items.append(_item(name, part, f"{folder.rstrip('/')}/{name}" if folder else name, loop, where, regions))
    return items


def _item(name: str, part: dict, images: str, loop: bool, where: str, regions: dict[str, int] | None) -> dict:
    """One switched-on section → a `keyframe_controlnets` item."""
    here = f"{where}: controlnet_map {name}"
    if name not in MODELS:
        raise InputError(f"{here}: not one of the ControlNets read here ({', '.join(MODELS)})")
    acts_in = part.get("control_region_list") or []
    if not isinstance(acts_in, list) or any(str(r) != "background" and str(r) not in (regions or {}) for r in acts_in):
        raise InputError(f"{here}: control_region_list {acts_in!r}: name the region_map's regions switched on, "
                         "or background")  # fmt: skip
    for key in ("controlnet_conditioning_scale", "control_guidance_start", "control_guidance_end"):
        if key not in part:
            raise InputError(f"{here}: {key} is missing (prompt-travel requires it too)")
    preprocessor = "none"
    if part.get("use_preprocessor", True):
        given = part.get("preprocessor") or {}
        preprocessor = given.get("type") if isinstance(given, dict) and given.get("type") else PREPROCESSORS.get(
            name, "none")  # fmt: skip
        if isinstance(given, dict) and given.get("param"):
            raise InputError(f"{here}: preprocessor parameters are not read here; remove param")
    if preprocessor not in RUN_HERE:
        raise InputError(
            f"{here}: its preprocessor {preprocessor!r} needs a model that is not here; make the control images "
            "beforehand and say use_preprocessor: false"
        )
    return {
        "model": MODELS[name], "images": images, "scale": part["controlnet_conditioning_scale"],
        "start": part["control_guidance_start"], "end": part["control_guidance_end"],
        "guess_mode": part.get("guess_mode", False), "spread": part.get("control_scale_list") or [], "loop": loop,
        "annotator": RUN_HERE[preprocessor],
        "regions": [r if r == "background" else regions[str(r)] for r in acts_in],
    }  # fmt: skip


REFERENCE_KEYS = {
    "ref_image": "image", "reference_attn": "attention", "reference_adain": "adain",
    "attention_auto_machine_weight": "attention_weight", "gn_auto_machine_weight": "adain_weight",
    "style_fidelity": "style_fidelity", "scale_pattern": "scale_pattern",
}  # fmt: skip
"""prompt-travel's `controlnet_ref` keys → the entry's `reference` keys (`pipeline/reference.py`)."""


def reference_section(controls: object, where: str) -> dict | None:
    """`controlnet_map`'s `controlnet_ref` switched on → the entry's `reference` mapping; None when it is off or
    absent. Its `ref_image` is found as the entry's other paths are; a key left out takes `Reference`'s default."""
    part = controls.get("controlnet_ref") if isinstance(controls, dict) else None
    if not isinstance(part, dict) or part.get("enable") is not True:
        return None
    unknown = sorted(k for k in part if k not in REFERENCE_KEYS and k != "enable")
    if unknown:
        raise InputError(f"{where}: controlnet_map controlnet_ref: {unknown[0]!r} is not read here")
    if not part.get("ref_image"):
        raise InputError(f"{where}: controlnet_map controlnet_ref needs ref_image, the reference picture")
    return {REFERENCE_KEYS[k]: v for k, v in part.items() if k != "enable"}
