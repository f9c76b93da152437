"""The web form's reference-only fields (an uploaded picture, A1111's mode, the style fidelity), checked as
`generate --reference` checks them and written as a run entry's `reference`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from animatediff.cli.reference_options import MODES
from animatediff.errors import InputError
from animatediff.ui.fields import choice, number

if TYPE_CHECKING:
    from animatediff.ui.settings import Settings


def parse_reference(raw: dict, s: Settings) -> None:
    """The form's reference picture (an upload's id, or none), its mode and its style fidelity, into `s`."""
    s.reference = str(raw.get("reference") or "")
    s.reference_mode = choice(raw.get("reference_mode") or "only", list(MODES), "reference mode")
    s.reference_fidelity = number(raw, "reference_fidelity", float, 0.5, "style fidelity")
    if s.reference and s.pag_scale:
        raise InputError("reference picture: not with a PAG scale (both change self-attention); clear one of them")


def reference_entry(s: Settings, upload: Callable[[str], str] = str) -> dict:
    """{"reference": …} for a run entry, the picture by `upload`'s path; {} without a picture."""
    if not s.reference:
        return {}
    attention, adain = MODES[s.reference_mode]
    section = {"image": upload(s.reference), "attention": attention, "adain": adain}
    return {"reference": section | {"style_fidelity": s.reference_fidelity}}
