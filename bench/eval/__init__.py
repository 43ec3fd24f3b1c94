"""Measuring a model: accuracies and gaps, divergences, time and memory, attacks, shadow models."""
