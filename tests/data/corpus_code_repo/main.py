"""Entry point of the example repository."""

from src import util


def main() -> None:
    print(util.greet("world"))


if __name__ == "__main__":
    main()
