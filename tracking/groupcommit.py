"""Group commit for the webhook: concurrent requests of one process share one transaction.

Every event of a campaign increments the same counter row, and PostgreSQL holds that row's lock
until the commit is flushed to disk, so one transaction per event caps a campaign at one event
per WAL flush. Here each request thread hands its verified, parsed event to one writer thread
per process and waits; the writer takes everything queued (up to ``MAX_BATCH``), stores it with
``storing.events_store`` in a single transaction and only then releases the waiting requests.

Durability is unchanged: a request answers 200 only after its event is committed; if the commit
fails, every request of the batch answers 503 and SNS delivers again (deduplicated on MessageId).
Under light load a batch holds one event, so latency is what it was. Batching starts no timer:
it only collects what arrived while the previous batch was being written.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field

from django.db import close_old_connections, connection

from tracking.parsing import EventRefused
from tracking.storing import events_store

logger = logging.getLogger(__name__)

MAX_BATCH = 200
IDLE_SECONDS = 30
WAIT_SECONDS = 25  # then answer 503; SNS retries and the MessageId deduplicates a late commit


@dataclass
class _Slot:
    item: tuple
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: BaseException | None = None


class GroupCommitUnavailable(Exception):
    """The batch could not be committed; the caller answers 503 so SNS retries."""


class GroupCommit:
    def __init__(self, *, max_batch: int = MAX_BATCH) -> None:
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Slot] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, item: tuple, *, timeout: float = WAIT_SECONDS):
        """Store ``item`` (sns_message_id, record, parsed) in the next batch; returns its Event or None."""
        self._ensure_writer()
        slot = _Slot(item)
        self._queue.put(slot)
        if not slot.done.wait(timeout):
            raise GroupCommitUnavailable("The event store is too slow right now.")
        if slot.error is not None:
            if isinstance(slot.error, EventRefused):
                raise slot.error
            raise GroupCommitUnavailable("The event could not be stored.") from slot.error
        return slot.result

    def _ensure_writer(self) -> None:
        # Started lazily, in the process that serves requests (after any fork by the server).
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._write_forever, name="tracking-group-commit", daemon=True)
                self._thread.start()

    def release_connection(self, *, timeout: float = 10) -> None:
        """Make the writer close its database connection (tests call it before dropping the database)."""
        if self._thread is None or not self._thread.is_alive():
            return
        marker = _Slot(item=())
        self._queue.put(marker)
        marker.done.wait(timeout)

    def _write_forever(self) -> None:
        while True:
            try:
                batch = [self._queue.get(timeout=IDLE_SECONDS)]
            except queue.Empty:
                connection.close()  # idle: give the connection back instead of holding it
                continue
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            markers = [slot for slot in batch if not slot.item]
            batch = [slot for slot in batch if slot.item]
            if batch:
                self._write(batch)
            if markers:
                connection.close()
                for marker in markers:
                    marker.done.set()

    def _write(self, batch: list[_Slot]) -> None:
        try:
            close_old_connections()  # drops a connection that is too old or broken (CONN_MAX_AGE)
            results = events_store(items=[slot.item for slot in batch])
        except Exception as error:
            connection.close()  # a broken connection must not poison the next batch
            if len(batch) == 1:
                self._fail(batch[0], error)
                return
            # One bad event must not fail its neighbours: store them one by one.
            for slot in batch:
                self._write([slot])
            return
        for slot, result in zip(batch, results, strict=True):
            slot.result = result
            slot.done.set()

    @staticmethod
    def _fail(slot: _Slot, error: Exception) -> None:
        if not isinstance(error, EventRefused):
            logger.error("Storing an SES event failed; SNS will deliver it again.", exc_info=error)
        slot.error = error
        slot.done.set()


writer = GroupCommit()
