"""dtkit.rollout."""
