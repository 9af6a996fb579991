"""Accuracy: cross-validation and transfer protocols, and the fit of the 80% interval model."""
