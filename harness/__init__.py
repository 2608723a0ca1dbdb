"""Layer-wise SFT claim harness."""

__version__ = "0.1.0"
