"""Write transactions of one process taken together (group commit).

Every intake transaction ends by appending to the audit chain under the chain head's lock, held
to the commit: requests of one connector arriving at once would each wait for the one before to
commit. Instead, while one thread of a process stores its request, the requests that arrive for
the same key queue here, and the next of them to get its turn stores everything that queued, in
one transaction (one insert, one chain-head lock, one commit). A lone request is stored at once:
nothing waits for a group to fill.
"""

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any


@dataclass
class Ticket:
    """One caller's item, and what storing it gave: a result or the exception to raise."""

    item: Any
    result: Any = None
    error: BaseException | None = None
    done: bool = False


_mutex = threading.Lock()
_waiting: dict[Hashable, list[Ticket]] = {}
_turns: dict[Hashable, threading.Lock] = {}


def together(key: Hashable, item: Any, store: Callable[[list[Ticket]], None]) -> Any:
    """Store `item` with whatever else is waiting for `key`; its result, or raise its error.

    `store(tickets)` sets each ticket's `result` or `error`. The thread whose turn comes stores
    every ticket waiting then, its own included; a thread whose ticket was stored meanwhile
    returns as soon as it gets its turn.
    """
    ticket = Ticket(item)
    with _mutex:
        _waiting.setdefault(key, []).append(ticket)
        turn = _turns.setdefault(key, threading.Lock())
    with turn:
        if not ticket.done:
            with _mutex:
                tickets = _waiting.pop(key)
            try:
                store(tickets)
            except BaseException as error:
                for waiting in tickets:
                    if waiting.error is None and waiting.result is None:
                        waiting.error = error
                raise
            finally:
                for waiting in tickets:
                    waiting.done = True
    if ticket.error is not None:
        raise ticket.error
    return ticket.result
