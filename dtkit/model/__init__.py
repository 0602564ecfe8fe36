"""dtkit.model."""
