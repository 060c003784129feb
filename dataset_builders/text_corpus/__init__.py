"""Text corpus builder: documents (for the text LM and interleaving) and short sentences (for the speech corpus).

Three sources, one output contract (docs/STAGES.md):

* ``tiny_world`` (the ``demo``/``tiny``/``micro`` presets): the closed-vocabulary world of the bAbI tasks
  (``qa/babi/tasks_1-20_v1-2/en`` under the data root). CPU-scale models cannot learn open-vocabulary speech,
  but they can learn a 150-word world end to end (see DESIGN.md, "The tiny world").
* ``files``: local text files or folders (by default ``text/`` under the data root: Gutenberg novels with their
  licence headers stripped, the KJV, WordNet examples, fortunes), for larger presets.
* ``hub``: any Hub text dataset by name, e.g. FineWeb-Edu, streamed so only the first ``max_documents``
  records are ever downloaded::

      source: hub
      hub_dataset: HuggingFaceFW/fineweb-edu
      hub_config: sample-10BT
      hub_split: train
      text_column: text
      streaming: true
      max_documents: 200000

Output (``output_dir``): ``documents/`` and ``sentences/`` (``DatasetDict`` with splits train/validation/test,
columns ``id``, ``text``, ``source``), for the tiny world also ``qa/`` (``id``, ``task``, ``story``,
``question``, ``answer``), and ``stats.json`` (vocabulary size and word counts per split).

The tiny-world document format. One bAbI story is one document, one sentence per line, each question
followed on its line by its answer::

    Mary moved to the bathroom.
    John went to the hallway.
    Where is Mary? bathroom.

Normalisation: statements start with a capital and end with ``.``, questions end with ``?``; the answer keeps
bAbI's case (lowercase words, capitalised names) and ends with ``.``; list answers are joined with ``, ``
(``apple, milk``); qa19's compass letters are spelled out (``s,e`` -> ``south, east``) so every answer is
speakable; names are capitalised everywhere (qa20's questions write them in lowercase). The ``qa/`` rows
carry exactly that answer string (without the final ``.``), so an LM trained on documents and prompted with
``story + "\\n" + question`` should continue with `` <answer>.``. ``story`` holds only the statements before
the question, not earlier questions.

Splits: documents and qa follow bAbI's train/test; ``validation`` is a seeded ``validation_fraction`` slice of
each task's train stories. Sentences are drawn from train documents only (unique statements, questions, and
``question answer.`` lines) plus ``num_templated_sentences`` templated ones (bAbI's own sentences with names,
places, objects, animals, colours ... swapped for others of the same kind seen in train), deduplicated on
their scoring form, then assigned to train/validation/test by a seeded hash of that form, so a held-out
sentence never appears in train, and nothing derived from validation/test stories reaches the sentences.
Sentence rows come in a seeded random order, so any prefix is a fair sample.

For ``files``/``hub`` documents are chunks of at most ``max_document_words`` words (paragraph boundaries kept),
split by a seeded hash of their id; their sentences inherit the split, are filtered for junk and
deduplicated with train taking precedence.

The package, one concern a module: `config` (the config, the split hashes), `babi` (parsing and rendering the
tiny world), `open_text` (cleaning and chunking open text), `sources` (one corpus per source), `build` (stats and
writing the DatasetDicts) and `stage` (the pipeline entry, `dataset_builders.text_corpus:run_stage`).
"""

from . import babi, open_text
from .babi import *  # noqa: F403 (all of babi.__all__, re-exported below)
from .build import build_text_corpus, corpus_stats
from .config import DEFAULT_BABI_DIR, FILE_FORMATS, SOURCES, SPLITS, TextCorpusConfig
from .open_text import *  # noqa: F403 (all of open_text.__all__)
from .stage import run_stage

# the public names of `babi` and `open_text` are all re-exported; the other modules' only in part
__all__ = [
    *babi.__all__,
    *open_text.__all__,
    "DEFAULT_BABI_DIR",
    "FILE_FORMATS",
    "SOURCES",
    "SPLITS",
    "TextCorpusConfig",
    "corpus_stats",
    "build_text_corpus",
    "run_stage",
]
