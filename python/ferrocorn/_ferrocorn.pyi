__version__: str

class RequestTimeout(BaseException):
    """Raised inside a request that runs past ``--timeout``.

    It derives from BaseException so that ``except Exception`` in the app does not swallow it.
    """

def run(argv: list[str]) -> int:
    """Run ferrocorn with ``argv`` (``sys.argv``) and return the exit status."""
