"""The package version, recorded in saved classifiers and checkpoints."""

__version__ = "0.1.0"
