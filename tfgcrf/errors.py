"""Errors that user-facing entry points report as one line, without a traceback."""


class UserError(Exception):
    """A problem with what the user asked for (bad file, bad flag value, ...).

    The CLI prints `tfgcrf: error: <message>` and exits with `exit_code`.
    """

    exit_code = 2


class InputError(UserError):
    """An input file or value that cannot be used (missing, corrupt, too large, out of range)."""
