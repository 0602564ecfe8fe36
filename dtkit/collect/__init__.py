"""dtkit.collect."""
