"""Entry point for `barfast` and `python -m barfast`.

`--version` is answered before anything heavy is imported, so it returns in a few milliseconds.

barfast never calls BLAS, but numpy's bundled OpenBLAS starts a thread pool on import that spins
briefly: ~0.07 s of CPU in every process that imports numpy (the coordinator and each local worker,
which inherit this environment). One BLAS thread removes that; a value the user set is kept.
"""

import os
import sys


def main() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if sys.argv[1:] in (["--version"], ["-V"]):
        from barfast import __version__

        print(f"barfast {__version__}")
        return
    from barfast.cli import run_app

    run_app()


if __name__ == "__main__":
    main()
