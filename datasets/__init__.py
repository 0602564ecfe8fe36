"""Dataset recipes (TOML) and shipped behaviour policies, installed as ``dtkit.recipes``.

This folder is data: each ``*.toml`` says what to train and which quality tiers
to roll out. ``policies/<recipe>/`` holds the SB3 zips that make builds reproducible.
"""
