"""Prepare the NLTK data TextAttack needs, offline: NLTK's English stopword list and WordNet 3.0.

    python scripts/setup_nltk_data.py [--dest DIR] [--wordnet-dir DIR]

Writes ``corpora/stopwords/english`` and (from Debian's ``wordnet-base`` + ``wordnet-sense-index``
files in /usr/share/wordnet, or --wordnet-dir) ``corpora/wordnet`` under DIR (default
``$ROBUSTTEXT_NLTK_DATA`` or ``~/.cache/robusttext/nltk_data``, where robusttext looks). robusttext
also does this on first use; this script does it ahead of time (CI) and reports what is missing.
"""

from __future__ import annotations

import argparse
import sys

from robusttext.runs.textattack_env import WORDNET_HINT, prepare_nltk_data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default=None, help="NLTK data folder to write (default: robusttext's)")
    parser.add_argument("--wordnet-dir", default=None, help="a WordNet 3.0 'dict' folder (default: /usr/share/wordnet)")
    args = parser.parse_args(argv)
    try:
        info = prepare_nltk_data(args.dest, args.wordnet_dir)
    except (FileNotFoundError, ValueError) as err:  # bad --dest / --wordnet-dir: one line, not a traceback
        print(f"setup_nltk_data: error: {err}", file=sys.stderr)
        return 2
    print(f"NLTK data in {info['nltk_data']}: stopwords ok, wordnet {'ok' if info['wordnet'] else 'MISSING'}")
    if not info["wordnet"]:
        print(f"warning: {WORDNET_HINT}; PWWS and the WordNet augmenters will refuse to run", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
