"""A lazy registry of plugin kinds: `kind` -> dotted path, imported on first use."""

from django.utils.module_loading import import_string


class Registry:
    """Maps a kind string to a class by dotted path; model choices come from here."""

    def __init__(self, what: str, kinds: dict[str, tuple[str, str]], *, default: str) -> None:
        assert default in kinds, f"the default {what} kind must be registered"
        self.what = what
        self.default = default
        self._kinds = kinds
        self._loaded: dict[str, type] = {}

    def get(self, kind: str) -> type:
        if kind not in self._kinds:
            raise KeyError(f"unknown {self.what} kind {kind!r}; known: {', '.join(self.kinds())}")
        if kind not in self._loaded:
            self._loaded[kind] = import_string(self._kinds[kind][0])
        return self._loaded[kind]

    def choices(self) -> list[tuple[str, str]]:
        return [(kind, label) for kind, (_, label) in self._kinds.items()]

    def label(self, kind: str) -> str:
        return self._kinds[kind][1] if kind in self._kinds else kind

    def kinds(self) -> list[str]:
        return list(self._kinds)

    def kinds_where(self, predicate) -> list[str]:
        """The kinds whose class satisfies predicate (e.g. polled sources)."""
        return [kind for kind in self._kinds if predicate(self.get(kind))]

    def __contains__(self, kind: str) -> bool:
        return kind in self._kinds
