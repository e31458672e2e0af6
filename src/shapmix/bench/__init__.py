"""``shapmix bench``: method presets, the grid runner and the result tables."""
