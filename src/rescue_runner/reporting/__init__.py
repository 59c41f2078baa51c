"""Renderers: results are data; each format is a function chosen by name."""
