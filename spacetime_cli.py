"""spacetime command line (placeholder during bootstrap)."""


def main() -> None:  # replaced below
    raise SystemExit("bootstrap")
