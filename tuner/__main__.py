"""`python -m tuner`: the `tuner` command, for environments whose PATH lacks the script."""

from __future__ import annotations

import sys


def main() -> int:
    from tuner.driver.cli import main as command  # the driver: imported only when run

    return command()


if __name__ == "__main__":
    sys.exit(main())
