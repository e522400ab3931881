"""The `kinesics` command line."""
import argparse
from . import __version__


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="kinesics")
    parser.add_argument("--version", action="version", version=f"kinesics {__version__}")
    parser.parse_args(argv)
    return 0
