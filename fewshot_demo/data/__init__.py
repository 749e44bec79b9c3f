"""Data sources that come from installed packages (no downloads)."""
