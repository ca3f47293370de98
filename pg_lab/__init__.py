"""pg_lab: REINFORCE and its policy-gradient family, composed with Hydra, logged to Weights & Biases."""

__version__ = "0.1.0"
