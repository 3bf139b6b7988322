"""The published ELMo models elmo_fast knows by name, with the URLs their authors document.

Every entry records where its URLs were found (``source``). Three formats:

- ``allennlp``: an ``options.json`` + ``weights.hdf5`` pair, used as downloaded;
- ``manylangs``: an ELMoForManyLangs zip, converted on first use by :mod:`elmo_fast.models.manylangs`.

``md5`` pins a file's published MD5 sum (only where the source publishes one); every file's sha256
is recorded in the cache on first download and checked on every load (:mod:`elmo_fast.models.cache`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

ALLENNLP_PAGE = "https://allennlp.org/elmo"
ALLENNLP_S3 = "https://s3-us-west-2.amazonaws.com/allennlp/models/elmo"
SOURCE_ALLENNLP = (
    "model list and sizes: AllenNLP's ELMo page (allennlp.org/elmo); URLs: flairNLP/flair "
    "flair/embeddings/token.py (ELMoEmbeddings)"
)
SOURCE_ALLENNLP_DEFAULT = "allenai/allennlp allennlp/modules/token_embedders/elmo_token_embedder.py (default options_file/weight_file)"
SOURCE_SEQVEC = (
    "URLs: sacdallago/bio_embeddings bio_embeddings/utilities/defaults.yml (seqvec); md5 and the rostlab "
    "mirror: kipoi/models SeqVec/embedding/model.yaml"
)
SOURCE_MANYLANGS = "HIT-SCIR/ELMoForManyLangs README.md (Downloads table; hosted on the NLPL vectors repository)"


@dataclass(frozen=True)
class ModelFile:
    """One file of a model: where it is published and, if the source gives one, its MD5 sum."""

    name: str
    url: str
    md5: str | None = None
    mirrors: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelEntry:
    """A published model: ``files`` are fetched into the cache folder ``name``."""

    name: str
    language: str
    domain: str
    size: str
    format: str
    files: tuple[ModelFile, ...]
    source: str
    publisher: str = ""
    """Who publishes the files (the short source column of ``elmo-fast models list``)."""
    notes: str = ""
    aliases: tuple[str, ...] = field(default=())

    @property
    def urls(self) -> list[str]:
        """Every URL of the entry (primary ones first)."""
        return [f.url for f in self.files] + [m for f in self.files for m in f.mirrors]


def _allennlp(name: str, folder: str, stem: str, size: str, *, language="English", domain="news (1B Word Benchmark)",
              weights: str | None = None, source: str = SOURCE_ALLENNLP, base: str = ALLENNLP_S3,
              aliases: tuple[str, ...] = ()) -> ModelEntry:
    return ModelEntry(
        name=name,
        language=language,
        domain=domain,
        size=size,
        format="allennlp",
        files=(
            ModelFile("options.json", f"{base}/{folder}/{stem}_options.json"),
            ModelFile("weights.hdf5", f"{base}/{folder}/{weights or stem + '_weights.hdf5'}"),
        ),
        source=source,
        publisher="AllenNLP",
        aliases=aliases,
    )


_ALLENNLP = [
    _allennlp("small", "2x1024_128_2048cnn_1xhighway", "elmo_2x1024_128_2048cnn_1xhighway", "13.6M params"),
    _allennlp("medium", "2x2048_256_2048cnn_1xhighway", "elmo_2x2048_256_2048cnn_1xhighway", "28.0M params"),
    _allennlp(
        "original", "2x4096_512_2048cnn_2xhighway", "elmo_2x4096_512_2048cnn_2xhighway", "93.6M params",
        source=SOURCE_ALLENNLP_DEFAULT, base="https://allennlp.s3.amazonaws.com/models/elmo",
    ),
    _allennlp(
        "original-5.5B", "2x4096_512_2048cnn_2xhighway_5.5B", "elmo_2x4096_512_2048cnn_2xhighway_5.5B", "93.6M params",
        domain="Wikipedia + news crawl (5.5B tokens)", aliases=("5.5B",),
    ),
    _allennlp(
        "pubmed", "contributed/pubmed", "elmo_2x4096_512_2048cnn_2xhighway", "93.6M params",
        domain="biomedical (PubMed)", weights="elmo_2x4096_512_2048cnn_2xhighway_weights_PubMed_only.hdf5",
    ),
    ModelEntry(
        name="portuguese",
        language="Portuguese",
        domain="general (contributed)",
        size="-",
        format="allennlp",
        files=(
            ModelFile("options.json", f"{ALLENNLP_S3}/contributed/pt/elmo_pt_options.json"),
            ModelFile("weights.hdf5", f"{ALLENNLP_S3}/contributed/pt/elmo_pt_weights.hdf5"),
        ),
        source=SOURCE_ALLENNLP,
        publisher="AllenNLP (contributed)",
        aliases=("pt",),
    ),
]

_SEQVEC_BASE = "http://data.bioembeddings.com/public/embeddings/embedding_models/seqvec"
_SEQVEC_MIRROR = "https://rostlab.org/~deepppi/embedding_repo/embedding_models/seqvec"
_SEQVEC = ModelEntry(
    name="seqvec",
    language="protein sequences",
    domain="UniRef50",
    size="-",
    format="allennlp",
    files=(
        ModelFile("options.json", f"{_SEQVEC_BASE}/options.json", md5="cede355187778de3ac302a83c761f5f9",
                  mirrors=(f"{_SEQVEC_MIRROR}/options.json",)),
        ModelFile("weights.hdf5", f"{_SEQVEC_BASE}/weights.hdf5", md5="0249d59249a50b43b79f641ff2ba7e88",
                  mirrors=(f"{_SEQVEC_MIRROR}/weights.hdf5",)),
    ),
    source=SOURCE_SEQVEC,
    publisher="Rostlab / bio_embeddings",
    notes="tokens are single amino-acid letters (SeqVec embeds a protein as one sentence of residues)",
)

# (code, language, NLPL repository id) in the order of ELMoForManyLangs' README table.
MANYLANGS_LANGUAGES: tuple[tuple[str, str, int], ...] = (
    ("ar", "Arabic", 136), ("bg", "Bulgarian", 137), ("ca", "Catalan", 138), ("cs", "Czech", 139),
    ("cu", "Old Church Slavonic", 140), ("da", "Danish", 141), ("de", "German", 142), ("el", "Greek", 143),
    ("en", "English", 144), ("es", "Spanish", 145), ("et", "Estonian", 146), ("eu", "Basque", 147),
    ("fa", "Persian", 148), ("fi", "Finnish", 149), ("fr", "French", 150), ("ga", "Irish", 151),
    ("gl", "Galician", 152), ("grc", "Ancient Greek", 153), ("he", "Hebrew", 154), ("hi", "Hindi", 155),
    ("hr", "Croatian", 156), ("hu", "Hungarian", 157), ("id", "Indonesian", 158), ("it", "Italian", 159),
    ("ja", "Japanese", 160), ("ko", "Korean", 161), ("la", "Latin", 162), ("lv", "Latvian", 163),
    ("nb", "Norwegian Bokmål", 165), ("nl", "Dutch", 164), ("nn", "Norwegian Nynorsk", 166), ("pl", "Polish", 167),
    ("pt", "Portuguese", 168), ("ro", "Romanian", 169), ("ru", "Russian", 170), ("sk", "Slovak", 171),
    ("sl", "Slovene", 172), ("sv", "Swedish", 173), ("tr", "Turkish", 174), ("ug", "Uyghur", 175),
    ("uk", "Ukrainian", 176), ("ur", "Urdu", 177), ("vi", "Vietnamese", 178), ("zh", "Chinese (traditional)", 179),
)

_MANYLANGS = [
    ModelEntry(
        name=f"manylangs-{code}",
        language=language,
        domain="CoNLL 2018 raw text (Wikipedia + Common Crawl)",
        size="-",
        format="manylangs",
        files=(ModelFile("model.zip", f"http://vectors.nlpl.eu/repository/11/{nlpl_id}.zip"),),
        source=SOURCE_MANYLANGS,
        publisher="ELMoForManyLangs (HIT-SCIR)",
        notes="converted to options.json + weights.hdf5 on first use",
    )
    for code, language, nlpl_id in MANYLANGS_LANGUAGES
]

REGISTRY: dict[str, ModelEntry] = {e.name: e for e in [*_ALLENNLP, _SEQVEC, *_MANYLANGS]}


def find(name: str) -> ModelEntry | None:
    """The entry called ``name`` (or one of its aliases), case-insensitively; None if unknown."""
    key = name.lower()
    for entry in REGISTRY.values():
        if key == entry.name.lower() or key in (a.lower() for a in entry.aliases):
            return entry
    return None


def register(entry: ModelEntry) -> None:
    """Add (or replace) an entry, e.g. a model on an internal server."""
    REGISTRY[entry.name] = entry
