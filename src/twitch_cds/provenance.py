"""Where each fact the engine saw comes from, down to the facts read from resources.

A derived fact stands on the facts it was derived from (and on equal derivations merged into
it); a group fact stands for its members. Cards and the trace follow these links to cite every
resource behind a conclusion, each once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


class Provenance:
    def __init__(self, *links: Mapping[str, Sequence[str]]) -> None:
        self._links: dict[str, list[str]] = {}
        for mapping in links:
            for fact_id, sources in mapping.items():
                self._links.setdefault(fact_id, []).extend(sources)
        self._inputs: dict[str, tuple[str, ...]] = {}

    def inputs(self, fact_ids: Iterable[str]) -> list[str]:
        """The input facts behind these facts, each once, in depth-first order."""
        out: dict[str, None] = {}
        for fact_id in fact_ids:
            out.update(dict.fromkeys(self.of(fact_id)))
        return list(out)

    def of(self, fact_id: str) -> tuple[str, ...]:
        """The input facts behind one fact, each once, in depth-first order (worked out once)."""
        found = self._inputs.get(fact_id)
        if found is not None:
            return found
        links = self._links
        sources = links.get(fact_id)
        if sources is None:  # read from a resource
            found = self._inputs[fact_id] = (fact_id,)
            return found
        if fact_id not in sources and not any(source in links for source in sources):
            found = self._inputs[fact_id] = tuple(dict.fromkeys(sources))  # a group's members
            return found
        out: dict[str, None] = {}
        seen: set[str] = set()
        stack = [fact_id]
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            sources = self._links.get(current)
            if sources is None:
                out[current] = None
            else:
                stack.extend(reversed(sources))
        found = self._inputs[fact_id] = tuple(out)
        return found
