"""Errors of a tier that cannot answer right now, shared by every layer that meets them
(the store raises it, the access layer and the entrypoints handle it), so that neither
``access`` nor ``store`` has to import the other for it."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """The database cannot be reached or did not answer in time; nothing was written."""
