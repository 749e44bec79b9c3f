"""Episodic meta-training and self-supervised pretraining (``python -m fewshot_demo.train``)."""
