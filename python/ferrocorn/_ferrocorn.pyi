__version__: str

def run(argv: list[str]) -> int:
    """Run ferrocorn with ``argv`` (``sys.argv``) and return the exit status."""
