"""pg_lab: REINFORCE and its policy-gradient family, composed with Hydra, logged to Weights & Biases."""

import pg_lab.envs  # noqa: F401  (registers pg_lab/Quadruped-v0 with gymnasium)

__version__ = "0.1.0"
