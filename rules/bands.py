"""Marginal bands: the parts of an amount that fall in each band, with the band's ratio.

Shared by the fund (its ratio bands) and critical-illness insurance (its bands over the year's burden).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from rules.context import ONE, Context
from rules.policy import Band


@dataclass(frozen=True, slots=True)
class Piece:
    """A slice of the compliant cost above the deductible, paid at one ratio; `low`–`high` is the slice
    actually paid (None for a flat ratio)."""

    amount: Decimal
    ratio: Decimal
    low: Decimal | None = None
    high: Decimal | None = None


def band_pieces(ctx: Context, bands: tuple[Band, ...], start: Decimal, end: Decimal,
                factor: Decimal = ONE, name: str = "ratio") -> list[Piece]:
    """The parts of [start, end] inside each band, each with the band's ratio (times `factor`)."""
    pieces = []
    for i, band in enumerate(bands):
        high = bands[i + 1].above if i + 1 < len(bands) else None
        low = max(start, band.above)
        top = end if high is None else min(end, high)
        if top > low:
            pieces.append(Piece(top - low, ctx.at_level(name, band.ratio) * factor, low, top))
    return pieces
