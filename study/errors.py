"""Errors a user can fix. The command-line tools print these as one line and exit non-zero."""


class UserError(Exception):
    """Bad input: names what is wrong and where (file, field, value) and what to do."""


class DatasetError(UserError):
    """A missing, corrupt or unknown dataset file."""


class SpecError(UserError):
    """A study or trial specification that does not validate."""
