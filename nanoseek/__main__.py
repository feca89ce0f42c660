"""`python -m nanoseek doctor`: what this machine can run."""
import sys

from nanoseek.env import doctor


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["doctor"]:
        doctor()
        return 0
    print("usage: python -m nanoseek doctor", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
