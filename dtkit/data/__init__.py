"""dtkit.data."""
