"""vitphase: an executable reproduction of "Mechanisms of Non-Monotonic Scaling in Vision
Transformers" (arXiv:2511.21635)."""
__version__ = "0.1.0"
