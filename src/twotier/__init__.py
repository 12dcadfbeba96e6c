"""twotier: a two-tier backend with caching."""

from twotier.heap import settle

__version__ = "0.1.0"

settle()  # every process of twotier's: see twotier.heap
