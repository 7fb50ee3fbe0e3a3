"""Placeholder entry point until the exporter lands."""


def main() -> None:
    raise SystemExit(0)
