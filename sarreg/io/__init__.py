"""Raster input: opening, windowed reading, SAR preprocessing, tiling."""
