"""Training crop and sampling-balance settings, without TensorFlow (the config module uses them).

`tfgcrf.data.pipeline` applies them; its docstring gives the rules.
"""

import collections
import dataclasses

from tfgcrf.errors import UserError


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Training crop and balance settings (see `make_dataset`)."""

    crop_scale: tuple
    crop_aspect: tuple
    flip: bool
    source_balance: float
    white_weight: float

    @classmethod
    def checked(cls, crop_scale, crop_aspect, flip, source_balance, white_weight, prefix=""):
        """Validated settings; raises UserError naming the offending value (`prefix` + name)."""
        try:
            scale = tuple(float(v) for v in crop_scale)
            aspect = tuple(float(v) for v in crop_aspect)
            balance, white = float(source_balance), float(white_weight)
        except (TypeError, ValueError):
            raise UserError(f"{prefix}crop_scale and {prefix}crop_aspect must be (min, max) pairs of numbers, "
                            f"{prefix}source_balance and {prefix}white_weight numbers") from None
        if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise UserError(f"{prefix}crop_scale must be (min, max) with 0 < min <= max <= 1, got {crop_scale!r}")
        if len(aspect) != 2 or not 0.0 < aspect[0] <= aspect[1]:
            raise UserError(f"{prefix}crop_aspect must be (min, max) with 0 < min <= max, got {crop_aspect!r}")
        if not isinstance(flip, bool):
            raise UserError(f"{prefix}flip must be true or false, got {flip!r}")
        if not 0.0 <= balance <= 1.0:
            raise UserError(f"{prefix}source_balance must be in [0, 1], got {source_balance!r}")
        if not 0.0 < white <= 1.0:
            raise UserError(f"{prefix}white_weight must be in (0, 1], got {white_weight!r}")
        return cls(scale, aspect, flip, balance, white)


def source_factors(relative_paths, balance):
    """Source factors of photos for `source_balance` = `balance`, with mean 1.

    The source of a photo is the first component of its '/'-separated relative path ('' for a
    file at the top level): for the offline collection, the package it comes from.

    Returns:
        list of float, one per path: `n ** -balance` normalized to a mean of 1, n being the
        number of paths of the same source.
    """
    sources = [path.split("/", 1)[0] if "/" in path else "" for path in relative_paths]
    counts = collections.Counter(sources)
    raw = [counts[source] ** -balance for source in sources]
    mean = sum(raw) / len(raw) if raw else 1.0
    return [value / mean for value in raw]
