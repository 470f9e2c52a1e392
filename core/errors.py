"""Errors a user can fix: the CLI prints them as one line and exits 2."""


class UserError(Exception):
    """Bad input or state; the message names the file, row or option and how to fix it."""
