"""The one exception type whose message is meant for the user, not for a traceback."""


class GanlabError(Exception):
    """A problem with the user's input (config, data, paths).

    The command-line entry points print its message as one line and exit non-zero,
    so the message must name the culprit (a config key, a file) and what to do about it.
    """


class Refused(GanlabError):
    """A run may not take its folder: another run's records are there (without
    ``trainer.resume``/``trainer.overwrite``, or from a different kind of run), or another
    process holds it. Nothing in the folder is changed: those records are not this run's."""
