"""dtkit.encoders."""
