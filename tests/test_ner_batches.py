"""The recognizer is read by one thread at a time, in batches: threads that redact at once
get exactly what each would have got alone."""

import threading

import pytest

from connectors.detectors import find_spans, ner

TEXTS = [
    "Please call back Maria Schneider about the refund.",
    "Rechnung an Herrn Klaus Becker, Hauptstraße 5, 10115 Berlin.",
    "Ticket opened by John Miller for order 1234.",
    "no names here, only lower case and 42 numbers",
] * 4


def test_threads_redacting_at_once_get_what_each_gets_alone():
    alone = [find_spans(text, ["person", "address"]) for text in TEXTS]
    at_once: list = [None] * len(TEXTS)
    start = threading.Barrier(len(TEXTS))

    def redact(index: int) -> None:
        start.wait()
        at_once[index] = find_spans(TEXTS[index], ["person", "address"])

    threads = [threading.Thread(target=redact, args=(index,)) for index in range(len(TEXTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert at_once == alone
    assert any(alone)  # the model found names to compare


def test_a_failing_batch_fails_every_thread_in_it(monkeypatch):
    reader = ner._reader(ner.model_for("en"))

    def broken(texts, **options):
        raise RuntimeError("model broke")

    monkeypatch.setattr(reader.nlp, "pipe", broken)
    with pytest.raises(RuntimeError, match="model broke"):
        reader.read(["Maria Schneider"])
    assert reader.queue == []  # nothing left behind for the next reader
