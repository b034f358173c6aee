"""The single exception type for bad *user* input.

Anything that a user can fix (a missing file, an unknown name, a bad config value) is raised as `CnnlabError` with a
message that names what is wrong and how to fix it. The CLI prints such errors as one line and exits with status 2;
any other exception is a bug in cnnlab and keeps its traceback.
"""


class CnnlabError(Exception):
    """An error caused by user input or the environment, with a message meant for the user."""
