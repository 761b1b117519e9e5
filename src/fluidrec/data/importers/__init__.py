"""Importers: published logs (MicroLens-50k, KuaiLive-M3, MIND) and generic CSV -> canonical datasets.

Each importer streams its source files, rejects malformed rows with the file, line
and reason (or skips and counts them), optionally samples negatives from the items
live at each moment, writes the canonical tables + manifest + resolved config, and
validates the result. See docs/real_data.md for sources, licences and mappings.

Example:
    >>> from fluidrec.data.importers import ImportOptions, import_microlens
    >>> summary = import_microlens("../shared/data/microlens_50k", "runs/ml50k", ImportOptions(negatives=4))
    >>> summary.impressions
"""

from fluidrec.data.importers.common import ImportOptions, ImportSummary
from fluidrec.data.importers.csv_log import CsvFormat, import_csv
from fluidrec.data.importers.kuailive import import_kuailive_m3
from fluidrec.data.importers.microlens import import_microlens
from fluidrec.data.importers.mind import import_mind
from fluidrec.data.importers.negatives import sample_negatives, sample_negatives_reference

__all__ = [
    "CsvFormat",
    "ImportOptions",
    "ImportSummary",
    "import_csv",
    "import_kuailive_m3",
    "import_microlens",
    "import_mind",
    "sample_negatives",
    "sample_negatives_reference",
]
