"""The project's expected errors: the CLI prints a HybridmiError in one line, anything else with its traceback."""


class HybridmiError(Exception):
    """An expected failure whose message says what went wrong and what to check."""


class UsageError(HybridmiError, ValueError):
    """A value, argument or setting that the project's own validation refuses."""


class MissingInput(HybridmiError, FileNotFoundError):
    """An input the user named (a file, directory or artifact) does not exist."""


class TaskFailed(HybridmiError, RuntimeError):
    """A task, rank or job failed; the message names it and the cause."""


class Preempted(HybridmiError):
    """SIGTERM stopped training after a step; its checkpoint was written (a rerun resumes from it)."""
