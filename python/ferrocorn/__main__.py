"""The ``ferrocorn`` command: hands ``sys.argv`` to the Rust CLI."""

import sys

from ferrocorn import _ferrocorn


def main() -> None:
    sys.exit(_ferrocorn.run(sys.argv))


if __name__ == "__main__":
    main()
