"""The ``sk-coreset`` command."""

import argparse


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="sk-coreset",
        description="Coreset selection for deep learning as scikit-learn estimators.",
    )
    parser.parse_args(argv)
    parser.print_help()
    return 0
