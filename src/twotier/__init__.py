"""twotier: a two-tier backend with caching."""

__version__ = "0.1.0"
