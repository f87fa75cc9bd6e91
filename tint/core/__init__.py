"""The lowest layer: errors, colour math, pixel checks and the pixel pipeline's steps, the
model, its weights format and registry, file helpers.  Imports nothing else of tint."""
