"""barfast: an HTTP load engine with a native core that measures truthfully."""

__version__ = "0.1.0"

__all__ = ["__version__"]
