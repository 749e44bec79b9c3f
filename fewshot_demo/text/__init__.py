"""Few-shot text classification: encoders, data loading and the encoder fine-tune.

Nothing here loads a model at import time; ``encoders.load_encoder`` does, on first use.
"""
