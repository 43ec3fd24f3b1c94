"""Torch helpers shared by the harness and plugins: training loops, networks, the built-in model plugin."""
