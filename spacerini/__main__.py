"""``python -m spacerini``: the same command line as the ``spacerini`` console script."""

from spacerini.cli import main

if __name__ == "__main__":
    main()
