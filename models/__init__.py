"""ETA models: features, training, evaluation, registry."""
