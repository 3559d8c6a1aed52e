"""A lazy registry of plugin kinds: `kind` -> dotted path, imported on first use."""

from django.utils.module_loading import import_string


class Registry:
    """Maps a kind string to a class by dotted path; model choices come from here."""

    def __init__(self, what: str, kinds: dict[str, tuple[str, str]]) -> None:
        self.what = what
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

    def kinds(self) -> list[str]:
        return list(self._kinds)

    def __contains__(self, kind: str) -> bool:
        return kind in self._kinds
