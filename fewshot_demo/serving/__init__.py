"""The app's programmatic API without any web framework: fit once, keep a handle, classify by handle."""
