"""DynamoDB expressions with every name and value as a placeholder: no field name (a
reserved word such as ``name``) and no value ever becomes part of an expression's text."""

from __future__ import annotations

from typing import Any


class Expression:
    """Placeholders for the names and values of one call's expressions (condition, update,
    key condition, filter, projection), shared by all of them."""

    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._values: dict[str, dict[str, Any]] = {}

    def name(self, attribute: str) -> str:
        placeholder = self._names.get(attribute)
        if placeholder is None:
            placeholder = self._names[attribute] = f"#n{len(self._names)}"
        return placeholder

    def value(self, attribute_value: dict[str, Any]) -> str:
        placeholder = f":v{len(self._values)}"
        self._values[placeholder] = attribute_value
        return placeholder

    def number(self, value: int) -> str:
        return self.value({"N": str(value)})

    def among(self, attribute: str, versions: frozenset[int]) -> str:
        """``attribute`` is one of ``versions`` (a condition)."""
        listed = ", ".join(self.number(version) for version in sorted(versions))
        return f"{self.name(attribute)} IN ({listed})"

    def arguments(self) -> dict[str, Any]:
        """The ``ExpressionAttributeNames`` and ``…Values`` of the call (those it uses)."""
        arguments: dict[str, Any] = {}
        if self._names:
            arguments["ExpressionAttributeNames"] = {p: n for n, p in self._names.items()}
        if self._values:
            arguments["ExpressionAttributeValues"] = dict(self._values)
        return arguments
