"""Entry point for `barfast` and `python -m barfast`.

`--version` is answered before anything heavy is imported, so it returns in a few milliseconds.
"""

import sys


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        from barfast import __version__

        print(f"barfast {__version__}")
        return
    from barfast.cli import run_app

    run_app()


if __name__ == "__main__":
    main()
