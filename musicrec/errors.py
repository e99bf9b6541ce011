"""Errors about the user's data, phrased so one line says what to fix."""
from __future__ import annotations


class InputError(ValueError):
    """An input file breaks a rule: the message names the file, the column and the rule."""

    def __init__(self, file: str, column: str | None, rule: str):
        self.file, self.column, self.rule = str(file), column, rule
        where = f"{self.file}: column '{column}'" if column else self.file
        super().__init__(f"{where}: {rule}")
