"""Resources: the tables twotier serves, declared in TOML and compiled once at start-up."""

from twotier.errors import ResourceError
from twotier.resources.declaration import default_resource, load_resources, parse_resources
from twotier.resources.resource import AUTO_KEY, Key, Record, Resource, to_json

__all__ = [
    "AUTO_KEY",
    "Key",
    "Record",
    "Resource",
    "ResourceError",
    "default_resource",
    "load_resources",
    "parse_resources",
    "to_json",
]
