"""Tile grids with halo over an image of a given size.

A tile has a *core* (the cells it is responsible for; cores partition the image, so keypoints found in
overlapping halos are kept exactly once) and a *read* region = core grown by the halo and clipped to the image.
The halo must be at least half the network's receptive field so core outputs equal whole-image outputs.
"""
from __future__ import annotations

from dataclasses import dataclass

from rasterio.windows import Window


@dataclass(frozen=True)
class Tile:
    """Core and read regions as (row0, row1, col0, col1), half-open, in the image's pixel grid."""

    core: tuple[int, int, int, int]
    read: tuple[int, int, int, int]

    @property
    def read_window(self) -> Window:
        r0, r1, c0, c1 = self.read
        return Window(c0, r0, c1 - c0, r1 - r0)

    @property
    def core_area(self) -> int:
        r0, r1, c0, c1 = self.core
        return (r1 - r0) * (c1 - c0)


def tile_grid(height: int, width: int, tile_size: int, halo: int) -> list[Tile]:
    """Cover a height x width image with tiles of core size <= tile_size (even offsets) and the given halo.

    Offsets are kept even so that the Fast network's 2x2 pooling grid is the same in every tile.
    """
    if tile_size <= 0 or (height <= tile_size and width <= tile_size):
        return [Tile((0, height, 0, width), (0, height, 0, width))]
    step = max(2, tile_size - tile_size % 2)
    halo = halo + halo % 2
    tiles = []
    for r0 in range(0, height, step):
        r1 = min(height, r0 + step)
        for c0 in range(0, width, step):
            c1 = min(width, c0 + step)
            tiles.append(Tile((r0, r1, c0, c1),
                              (max(0, r0 - halo), min(height, r1 + halo), max(0, c0 - halo), min(width, c1 + halo))))
    return tiles
