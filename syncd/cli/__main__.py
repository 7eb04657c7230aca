"""`python -m syncd.cli`: the `syncd` command without its console script."""

from syncd.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
