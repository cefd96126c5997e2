"""Make TextAttack importable and runnable offline (NLTK data, no download attempts).

TextAttack 0.3.11 needs NLTK's English stopword list at import (every recipe's
``StopwordModification``), WordNet for PWWS / the WordNet augmenters, and on first import runs a
"post-install" step that calls ``nltk.download`` six times (network). This module:

* writes NLTK's English stopword list (the 179 words of ``nltk_data/corpora/stopwords/english``) to
  ``<nltk data dir>/corpora/stopwords/english``;
* exposes a WordNet 3.0 database folder as ``<nltk data dir>/corpora/wordnet`` (copies of the
  Princeton files of Debian's ``wordnet-base`` and ``wordnet-sense-index`` packages in ``/usr/share/wordnet``, or ``$WNHOME/dict``,
  or ``$ROBUSTTEXT_WORDNET_DIR``) plus the ``lexnames`` file NLTK's reader wants but Debian does not
  ship (its content is the fixed table of ``lexnames(5WN)``);
* puts that folder on ``nltk.data.path`` and marks TextAttack's post-install step as done, and makes
  ``nltk.download`` look locally only (it returns False instead of reaching the network).

The nltk data folder is ``$ROBUSTTEXT_NLTK_DATA``, default ``~/.cache/robusttext/nltk_data``.
``scripts/setup_nltk_data.py`` runs :func:`prepare_nltk_data` ahead of time (e.g. in CI).
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

logger = logging.getLogger("robusttext")

#: nltk_data/corpora/stopwords/english (NLTK's list, 179 words), in the file's order.
ENGLISH_STOPWORDS: tuple[str, ...] = tuple(
    """i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves
    he him his himself she she's her hers herself it it's its itself they them their theirs themselves
    what which who whom this that that'll these those am is are was were be been being have has had having
    do does did doing a an the and but if or because as until while of at by for with about against
    between into through during before after above below to from up down in out on off over under again
    further then once here there when where why how all any both each few more most other some such no
    nor not only own same so than too very s t can will just don don't should should've now d ll m o re
    ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't haven haven't
    isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't
    weren weren't won won't wouldn wouldn't""".split()
)

#: The 45 WordNet 3.0 lexicographer files (lexnames(5WN)); the last field is the syntactic category
#: (1 noun, 2 verb, 3 adjective, 4 adverb).
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
#: Files of a WordNet 3.0 database folder that NLTK's WordNetCorpusReader reads.
WORDNET_FILES = tuple(
    f"{kind}.{pos}" for kind in ("index", "data") for pos in ("noun", "verb", "adj", "adv")
) + ("adj.exc", "adv.exc", "noun.exc", "verb.exc", "cntlist.rev", "index.sense")

#: What to install when WordNet is missing.
WORDNET_HINT = (
    "WordNet 3.0 was not found: install Debian's packages (apt-get install -y --no-install-recommends "
    "wordnet-base wordnet-sense-index; files in /usr/share/wordnet) or set ROBUSTTEXT_WORDNET_DIR to a "
    "WordNet 3.0 'dict' folder"
)


def nltk_data_dir() -> Path:
    """Where robusttext keeps NLTK data: ``$ROBUSTTEXT_NLTK_DATA`` or ``~/.cache/robusttext/nltk_data``."""
    env = os.environ.get("ROBUSTTEXT_NLTK_DATA")
    return Path(env) if env else Path.home() / ".cache" / "robusttext" / "nltk_data"


def find_wordnet_source() -> Path | None:
    """A folder holding the WordNet 3.0 database files, or None."""
    candidates = [os.environ.get("ROBUSTTEXT_WORDNET_DIR"), os.environ.get("WNSEARCHDIR")]
    if os.environ.get("WNHOME"):
        candidates.append(str(Path(os.environ["WNHOME"]) / "dict"))
    candidates.append("/usr/share/wordnet")
    for cand in candidates:
        if cand and all((Path(cand) / f).is_file() for f in WORDNET_FILES):
            return Path(cand)
    return None


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)


def prepare_nltk_data(dest: str | os.PathLike | None = None, wordnet_dir: str | os.PathLike | None = None) -> dict:
    """Write the stopword list and link WordNet under ``dest`` (default :func:`nltk_data_dir`).

    Idempotent. Returns ``{"nltk_data": path, "stopwords": True, "wordnet": bool}``; WordNet is
    False when no WordNet 3.0 folder was found (PWWS and the WordNet augmenters then refuse to run).
    """
    root = Path(dest) if dest is not None else nltk_data_dir()
    _write_if_changed(root / "corpora" / "stopwords" / "english", "\n".join(ENGLISH_STOPWORDS) + "\n")
    source = Path(wordnet_dir) if wordnet_dir is not None else find_wordnet_source()
    has_wordnet = False
    if source is not None:
        missing = [f for f in WORDNET_FILES if not (source / f).is_file()]
        if missing:
            raise FileNotFoundError(f"wordnet_dir {source} lacks {missing}; {WORDNET_HINT}")
        target = root / "corpora" / "wordnet"
        target.mkdir(parents=True, exist_ok=True)
        for name in WORDNET_FILES:
            # NLTK 3.10 refuses symlinks leaving the corpus root and hard links: copy (~30 MB, once).
            dst, src = target / name, (source / name).resolve()
            if dst.is_file() and not dst.is_symlink() and dst.stat().st_size == src.stat().st_size:
                continue
            dst.unlink(missing_ok=True)
            shutil.copyfile(src, dst.with_suffix(".tmp"))
            os.replace(dst.with_suffix(".tmp"), dst)
        lexnames = "".join(f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(_LEXNAMES))
        _write_if_changed(target / "lexnames", lexnames)
        has_wordnet = True
    return {"nltk_data": str(root), "stopwords": True, "wordnet": has_wordnet}


def _offline_download(info_or_id: Any = None, *args: Any, **kwargs: Any) -> bool:
    """Stand-in for ``nltk.download``: True if the package is present locally, else False (no network)."""
    import nltk

    name = str(info_or_id)
    for sub in ("corpora", "taggers", "tokenizers", "chunkers", "misc", "models"):
        for suffix in ("", ".zip"):
            try:
                nltk.data.find(f"{sub}/{name}{suffix}")
                return True
            except LookupError:
                pass
    logger.debug("nltk.download(%r) skipped: offline, not present locally", name)
    return False


_READY: dict | None = None


def setup_offline_nltk() -> dict:
    """Prepare NLTK data, put it on ``nltk.data.path`` and make ``nltk.download`` local-only."""
    global _READY
    if _READY is not None:
        return _READY
    import nltk

    info = prepare_nltk_data()
    if info["nltk_data"] not in nltk.data.path:
        nltk.data.path.insert(0, info["nltk_data"])
    nltk.download = _offline_download  # type: ignore[assignment]
    _READY = info
    return info


def require_textattack() -> None:
    """Raise an ImportError naming the install when TextAttack is not installed (before any work starts).

    TextAttack 0.3.11 pulls ``flair``, which needs ``transformers<5``: on transformers 5 the attacks live in
    a separate environment on the pinned stack (``.ci/constraints.txt``)."""
    import importlib.util

    if importlib.util.find_spec("textattack") is not None:
        return
    from ..compat import TRANSFORMERS_MAJOR

    if TRANSFORMERS_MAJOR >= 5:
        raise ImportError(
            "attacks need TextAttack, whose flair dependency needs transformers<5 (this environment has "
            "transformers 5): install robusttext in another environment with pip install -c .ci/constraints.txt "
            "-e '.[all]'"
        )
    raise ImportError("attacks need TextAttack: pip install 'robusttext[attacks]' (or pip install textattack==0.3.11)")


def import_textattack() -> Any:
    """Import TextAttack offline: NLTK data in place, no post-install downloads. Returns the module.

    Raises ImportError naming the install command when TextAttack is not installed.
    """
    require_textattack()
    setup_offline_nltk()
    # TextAttack's first import runs nltk.download(...) unless this marker exists in its cache dir.
    cache = Path(os.environ.get("TA_CACHE_DIR", os.path.expanduser("~/.cache/textattack")))
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "post_install_check_3").touch(exist_ok=True)
    import textattack

    return textattack


def require_wordnet(what: str) -> None:
    """Raise a clear error when WordNet is needed (``what``, e.g. 'recipe pwws') but not installed."""
    info = setup_offline_nltk()
    if not info["wordnet"]:
        raise FileNotFoundError(f"{what} needs WordNet. {WORDNET_HINT}")
