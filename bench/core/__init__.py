"""The bottom layer: contracts, plugins and registry, shared keys, recipe, forget requests, cache."""
