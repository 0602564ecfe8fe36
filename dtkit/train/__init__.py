"""dtkit.train."""
