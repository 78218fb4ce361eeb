"""The error type for bad input: the CLI prints it as one line and exits with code 2."""


class UsageError(ValueError):
    """Bad input from the user (a path, a value, a file format): reported without a traceback."""
