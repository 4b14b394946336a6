"""Dispatch: one task's send loop for a campaign, and the recording of SES's answers.

A dispatch task works for at most ``SEND_TASK_SECONDS`` and then enqueues its own continuation,
so a worker is never tied up for hours; pause, cancel and a stopping worker are seen between
messages. Any number of dispatchers may run for one campaign on any number of machines; each
sends only what it holds under its claims (``claims.py``).

Per message: render (templates compiled once per campaign), raw MIME (``mime.py``), handed to
the process's django-ses backend (``ses.py``) on a thread of its own as soon as one is free.
Results are written in small groups: post_office ``Email`` rows (template + context, i.e. render
on delivery) with their ``Log`` rows and the recipients' statuses, all in one transaction that
is retried on a fresh connection if the database drops it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from email.utils import formatdate

from django.conf import settings
from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    NotSupportedError,
    connection,
    transaction,
)
from django.db.models import Q
from django.utils import timezone
from post_office.models import STATUS as OUTBOX_STATUS
from post_office.models import Email as OutboxEmail
from post_office.models import Log as OutboxLog

from audiences.models import Contact, Subscription, Suppression
from campaigns.composer.rendering import recipient_context
from campaigns.delivery import ratelimit
from campaigns.delivery.claims import (
    database_datetime,
    heartbeat,
    heartbeat_interval,
    reclaim_stale,
    release,
    skipped_if_cancelled,
)
from campaigns.delivery.errors import Outcome, classify_error
from campaigns.delivery.mime import CampaignMessage, campaign_outbox_template, campaign_tags, prepare_campaign
from campaigns.delivery.ses import max_calls_in_flight, ses_connection, thread_pool
from campaigns.delivery.shares import campaign_share, campaign_waiting_for_worker
from campaigns.models import Campaign, Recipient
from campaigns.quotas import QuotaRoom, claim_within_quota
from campaigns.selectors import audience_foreign_parts
from campaigns.services import (
    CampaignError,
    campaign_finish_if_done,
    campaign_pause,
    campaign_pause_for_quota,
    dispatchers_start,
    foreign_parts_message,
)
from common import shutdown
from organisations.models import Organisation
from stats.counters import counters_locked, outcomes_add, usage_add

logger = logging.getLogger(__name__)

# A call slower than this stops counting against SEND_THREADS: the next message goes out on
# another thread instead of waiting behind it (SES answers a send in well under a second).
STRAGGLER_SECONDS = 0.5
# Results are written in small groups: every ``chunk_size`` results or after this long.
COMMIT_SECONDS = 0.2
# A slot's messages may leave up to this late before the rest of the slot is given up.
LATE_SECONDS = 0.1
# How often a dispatcher checks that its campaign is still sending (pause and cancel take effect).
STATUS_CHECK_SECONDS = 0.25
# How long a dispatcher keeps reconnecting to a database that dropped it before giving up.
DATABASE_RETRY_SECONDS = 60.0
# The express lane (single messages ahead of bulk work): how often every dispatcher looks, how
# long it may spend on one message, and how many messages it takes per look.
EXPRESS_CHECK_SECONDS = 0.5
EXPRESS_SECONDS = 5.0
EXPRESS_BATCH = 50
# A campaign whose dispatch tasks wait in the queue while other campaigns' dispatchers hold every
# worker: a dispatcher that has worked YIELD_AFTER_SECONDS looks every YIELD_CHECK_SECONDS and hands
# its worker over (shares.campaign_waiting_for_worker), so a club's note does not wait for
# SEND_TASK_SECONDS behind a national newsletter.
YIELD_AFTER_SECONDS = 2.0
YIELD_CHECK_SECONDS = 1.0


def _with_database[T](action: Callable[[], T], *, what: str) -> T:
    """Run ``action``; if the database connection broke, reconnect and try again for up to a minute.

    A dispatcher holds SES's answers for the calls it made: losing them to a dropped connection
    (a restarted or failed-over PostgreSQL, ``pg_terminate_backend``) would send every one of them
    again. Errors about the data itself are not retried; nor is anything inside a transaction
    someone else opened (it cannot be resumed on a new connection).
    """
    give_up = time.monotonic() + DATABASE_RETRY_SECONDS
    delay = 0.1
    while True:
        try:
            return action()
        except (IntegrityError, DataError, NotSupportedError):
            raise
        except (DatabaseError, InterfaceError) as error:
            if connection.in_atomic_block or time.monotonic() + delay > give_up:
                raise
            logger.warning("%s: the database connection failed (%s); reconnecting in %.1f s", what, error, delay)
            connection.close()  # the next query opens a fresh connection
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


# --- the dispatch loop -------------------------------------------------------------------------


def campaign_dispatch(*, campaign_id: int, seconds: float | None = None) -> str:
    """Send for this campaign until done, paused or out of time. Returns why it stopped:
    "finished", "stopped" (paused, cancelled or the worker is stopping), "continued" (a new
    task carries on) or "idle" (the rest is in other dispatchers' hands)."""
    deadline = time.monotonic() + (seconds or settings.SEND_TASK_SECONDS)
    dispatcher = _dispatcher_for(campaign_id, deadline=deadline)
    return dispatcher.run() if isinstance(dispatcher, Dispatcher) else dispatcher


def _dispatcher_for(campaign_id: int, *, deadline: float, express: bool = False) -> Dispatcher | str:
    """The campaign's dispatcher, ready to run; or why there is none ("stopped")."""
    campaign = Campaign.objects.get(pk=campaign_id)
    if campaign.status != Campaign.Status.SENDING:
        return "stopped"
    foreign = audience_foreign_parts(campaign)
    if foreign:
        # A list, segment or layout of another organisation changed in behind the forms' back:
        # nothing more goes out in it (another club's footer and address); the page says why.
        with contextlib.suppress(CampaignError):
            campaign_pause(campaign_id=campaign_id, reason=foreign_parts_message(foreign))
        return "stopped"
    if shutdown.stop_requested():
        # Taken from the queue by a worker that is stopping: hand it back for another cluster.
        dispatchers_start(campaign_id=campaign_id, count=1)
        return "stopped"
    campaign_outbox_template(campaign)
    prepared = prepare_campaign(campaign)
    ses_connection()  # made before the first slot (110-130 ms): a cold client makes the first sends late
    kind = ExpressDispatcher if express else Dispatcher
    return kind(prepared, list_ids=_lists_to_stay_on(campaign), deadline=deadline)


def _lists_to_stay_on(campaign: Campaign) -> list[int] | None:
    """The lists a recipient must still be on when sent (None: segments are included, the snapshot
    stands). A sending campaign's audience cannot be edited, so once per dispatch task is enough."""
    if campaign.include_segments.exists():
        return None
    return list(campaign.include_lists.values_list("pk", flat=True))


def claim_size(rate: float) -> int:
    """At most about two seconds of the global rate per claim, so that work spreads over all the
    dispatchers of a campaign (e.g. at the SES sandbox's 1/s, two dispatchers get one each)."""
    return max(1, min(settings.SEND_BATCH_SIZE, math.ceil(rate * 2)))


@dataclass(slots=True)
class _Call:
    started: float
    recipient: Recipient
    token: str
    context: dict


class Dispatcher:
    """One dispatch task's send loop: claims in, SES calls out as threads come free, results back.

    - Messages are fed to the thread pool one by one, each after its slot of the global rate
      limiter (reserved a tenth of a second of the rate at a time), whenever fewer than
      ``SEND_THREADS`` calls are running; a call slower than ``STRAGGLER_SECONDS`` stops counting,
      so one slow or hung call never holds up the others (up to ``max_calls_in_flight``).
    - Results are recorded in small groups (``chunk_size`` results or ``COMMIT_SECONDS``).
    - Every ``heartbeat_interval`` the dispatcher renews the heartbeat of the claims it holds and
      learns which recipients it still holds; it never sends one it lost, and starts no call
      unless its last heartbeat is recent. Final writes are conditional on the claim token.
    - The next claim is taken before the current one runs out, so claims do not wait for each
      other either.
    """

    def __init__(self, prepared: CampaignMessage, *, list_ids: list[int] | None, deadline: float) -> None:
        self.prepared = prepared
        self.campaign_id = prepared.campaign.pk
        self.list_ids = list_ids
        self.deadline = deadline
        self.rate = ratelimit.send_rate()
        self.group = ratelimit.chunk_size(self.rate, settings.SEND_BATCH_SIZE)
        self.claim_limit = claim_size(self.rate)
        self.threads = settings.SEND_THREADS
        self.max_in_flight = max_calls_in_flight()
        self.beat_every = heartbeat_interval()
        self.pending: deque[tuple[str, Recipient]] = deque()  # claimed, not yet sent
        self.held: dict[str, set[int]] = {}  # claim token -> recipients it holds that have no outcome yet
        self.in_flight: dict[Future, _Call] = {}  # oldest first
        self.finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self.results: list[Outcome] = []
        self.results_since = 0.0
        # The current slot of the limiter: messages it still lets go, its start, how many went.
        # A slot's messages leave evenly spaced; one that falls a slot's length behind (every
        # thread busy) gives up the rest of the slot, so late sends never pile onto later slots.
        self.slot = 0
        self.slot_start = 0.0
        self.slot_sent = 0
        # How late a slot's next message may be before the rest of the slot is given up: a slot's
        # length, but at least LATE_SECONDS (at high rates a slot is shorter than sending its
        # messages takes, and a new reservation per message would cost more than it smooths).
        self.slot_late = max(self.group / self.rate, LATE_SECONDS)
        self.date = ""
        self.beat_at = time.monotonic()
        self.checked_at = float("-inf")
        self.claim_after = float("-inf")
        self.ses_paused = False
        self.express_at = time.monotonic()  # when to look for single messages waiting (express lane)
        # The campaign's share of the rate while others send too (shares.py); single messages take none.
        self.share = 1.0
        self.shared = prepared.campaign.kind == Campaign.Kind.CAMPAIGN
        # When to look first for a campaign waiting for a worker this dispatcher holds (it works a
        # little first, so that two campaigns never just swap workers back and forth).
        self.yield_check_at = time.monotonic() + YIELD_AFTER_SECONDS
        self.weight = organisation_weight(prepared.campaign.organisation_id) if self.shared else 1

    def run(self) -> str:
        try:
            while True:
                self._collect()
                self._commit_if_due()
                if time.monotonic() - self.beat_at >= self.beat_every:
                    self._beat()
                reason = self._stop_reason()
                if reason:
                    return self._wind_down(reason)
                if time.monotonic() >= self.express_at:
                    self._express()
                if len(self.pending) <= self.group and time.monotonic() >= self.claim_after:
                    self._claim()
                if self.pending:
                    if not self._send_next():
                        self._collect(timeout=0.01)  # a call to end (or to turn straggler)
                elif self.in_flight or self.results:
                    self._collect(timeout=0.05)
                    self._commit()
                else:
                    finished = self._nothing_to_claim()
                    if finished:
                        return finished
        except BaseException:
            with contextlib.suppress(Exception):
                self._release_pending()
            raise

    # --- feeding

    def _claim(self) -> None:
        organisation_id = self.prepared.campaign.organisation_id
        claimed = _with_database(
            lambda: claim_within_quota(
                campaign_id=self.campaign_id, organisation_id=organisation_id, limit=self.claim_limit
            ),
            what="claim",
        )
        if isinstance(claimed, QuotaRoom):  # the organisation's quota is used up
            self.claim_after = time.monotonic() + 0.5
            if claimed.used_up and not (self.pending or self.in_flight or self.results):
                # Sent messages fill it and this dispatcher holds nothing more: pause until it renews
                # (while others' claims count, they may still give some back: wait and look again).
                campaign_id = self.campaign_id
                _with_database(lambda: campaign_pause_for_quota(campaign_id=campaign_id, room=claimed), what="pausing")
                self.checked_at = float("-inf")  # the next status check stops this dispatcher
            return
        if not claimed:
            self.claim_after = time.monotonic() + 0.5
            return
        recipients = _with_database(
            lambda: list(Recipient.objects.filter(id__in=claimed.ids).select_related("contact").order_by("id")),
            what="claim",
        )
        self.held[claimed.token] = set(claimed.ids)
        recipients = _with_database(
            lambda: _skip_unreachable(self.campaign_id, self.list_ids, claimed.token, recipients),
            what="skipping unreachable",
        )
        self.held[claimed.token] = {recipient.pk for recipient in recipients}
        self.pending.extend((claimed.token, recipient) for recipient in recipients)

    def _send_next(self) -> bool:
        """Start the next pending message's call; False if it must wait (no thread, stale beat)."""
        now = time.monotonic()
        if now - self.beat_at >= 2 * self.beat_every:
            self._beat()  # the database was slow or gone: make sure the claims are still ours
            if time.monotonic() - self.beat_at >= 2 * self.beat_every:
                return False
        if not self._has_thread(now):
            return False
        if self.slot and time.time() > self._due() + self.slot_late:
            self.slot = 0  # fell behind its slot (no thread was free): late sends would bunch up
        if self.slot == 0:
            if self.share < 1.0:
                # Others send too: this campaign's own clock paces it at its share first.
                share_rate = self.rate * self.share
                count = min(ratelimit.chunk_size(share_rate, settings.SEND_BATCH_SIZE), len(self.pending))
                _with_database(
                    lambda: ratelimit.wait_for_slot(
                        count, rate=share_rate, name=ratelimit.share_clock(self.campaign_id)
                    ),
                    what="share of the rate",
                )
            else:
                count = min(self.group, len(self.pending))
            self.slot_start = _with_database(
                lambda: ratelimit.wait_for_slot(count, rate=self.rate), what="rate limiter"
            )
            self.slot, self.slot_sent = count, 0
            self.date = formatdate(usegmt=True)
            if shutdown.stop_requested():
                return True  # the loop winds down before sending anything more
        delay = self._due() - time.time()
        if delay > 0.0005:  # finer waits cost more than they smooth
            time.sleep(delay)  # message i of a slot leaves at its start + i / rate, not all at once
        token, recipient = self.pending.popleft()
        if recipient.pk not in self.held.get(token, ()):
            return True  # lost since it was claimed (requeued as stale): another dispatcher sends it
        context = recipient_context(recipient)
        message = self.prepared.build(recipient, context, self.date)
        future = thread_pool().submit(_send_one, recipient, message)
        self.in_flight[future] = _Call(time.monotonic(), recipient, token, context)
        future.add_done_callback(self.finished.put)
        self.slot -= 1
        self.slot_sent += 1
        return True

    def _due(self) -> float:
        """When the next message of the current slot may leave (wall clock, like the limiter)."""
        return self.slot_start + self.slot_sent / self.rate

    def _has_thread(self, now: float) -> bool:
        running = len(self.in_flight)
        if running < self.threads:
            return True
        if running >= self.max_in_flight:
            return False
        stragglers = 0
        for call in self.in_flight.values():  # oldest first
            if now - call.started < STRAGGLER_SECONDS:
                break
            stragglers += 1
        return running - stragglers < self.threads

    # --- results

    def _collect(self, timeout: float = 0.0) -> None:
        try:
            future = self.finished.get(timeout=timeout) if timeout > 0 else self.finished.get_nowait()
        except queue.Empty:
            return
        if not self.results:
            self.results_since = time.monotonic()
        while True:
            call = self.in_flight.pop(future)
            outcome = future.result()  # _send_one returns every error as an outcome
            outcome.token, outcome.context = call.token, call.context
            self.results.append(outcome)
            try:
                future = self.finished.get_nowait()
            except queue.Empty:
                return

    def _commit_if_due(self) -> None:
        if self.results and (
            len(self.results) >= self.group or time.monotonic() - self.results_since >= COMMIT_SECONDS
        ):
            self._commit()

    def _commit(self) -> None:
        outcomes, self.results = self.results, []
        if not outcomes:
            return
        campaign = self.prepared.campaign
        keep_going = _with_database(lambda: _record(campaign, outcomes), what="recording SES's answers")
        # seconds: from the group's first answer until it is written (slow writes show here).
        seconds = round(time.monotonic() - self.results_since, 3)
        logger.info(
            "campaign %s: %s results written in %.3f s",
            campaign.pk,
            len(outcomes),
            seconds,
            extra={"campaign": campaign.pk, "messages": len(outcomes), "seconds": seconds},
        )
        for outcome in outcomes:
            self.held.get(outcome.token, set()).discard(outcome.recipient.pk)
        self.held = {token: ids for token, ids in self.held.items() if ids}
        if not keep_going:
            self.ses_paused = True

    # --- the express lane

    def _express(self) -> None:
        """Send the single messages waiting (API), ahead of this dispatcher's own work.

        Every dispatcher looks twice a second, so a message waits for neither a free worker nor
        the bulk queue: while every worker runs a large campaign's dispatchers, one of them sends it
        within about a second, through the same claims, limiter slot, suppression check and
        recording (one of them wins each message's claim; the others find nothing). The message's
        own dispatch task does the same when a worker is free first.
        """
        self.express_at = time.monotonic() + EXPRESS_CHECK_SECONDS
        waiting = _with_database(lambda: express_due(exclude=self.campaign_id), what="express lane")
        for campaign_id in waiting:
            if shutdown.stop_requested():
                return
            try:
                dispatcher = _dispatcher_for(campaign_id, deadline=time.monotonic() + EXPRESS_SECONDS, express=True)
                if isinstance(dispatcher, Dispatcher):
                    dispatcher.run()
            except Exception:  # its own dispatch task (or the engine tick) takes it up; ours goes on
                logger.exception("campaign %s: a single message could not be sent in the express lane", campaign_id)

    # --- ownership

    def _beat(self) -> None:
        """Renew our claims, drop what we lost, and requeue claims of dead dispatchers."""
        started = time.monotonic()
        held = _with_database(lambda: heartbeat(tokens=list(self.held)), what="heartbeat")
        self.beat_at = started
        lost = 0
        for token, ids in held.items():
            lost += len(self.held[token] - ids)
            self.held[token] &= ids
        if lost:
            logger.warning(
                "campaign %s: %s claimed recipients were requeued by others; not sending them", self.campaign_id, lost
            )
        _with_database(lambda: reclaim_stale(campaign_id=self.campaign_id), what="requeueing stale claims")

    # --- stopping

    def _stop_reason(self) -> str:
        if shutdown.stop_requested():
            return "shutdown"
        if self.ses_paused:
            return "stopped"
        now = time.monotonic()
        if now >= self.deadline:
            return "deadline"
        if now - self.checked_at >= STATUS_CHECK_SECONDS:
            self.checked_at = now
            wanting = bool(self.pending)
            if not _with_database(lambda: _still_sending(self.campaign_id, wanting=wanting), what="campaign status"):
                return "stopped"
            if self.shared:
                campaign = self.prepared.campaign
                self.share = _with_database(
                    lambda: campaign_share(campaign, weight=self.weight), what="share of the rate"
                )
                if now >= self.yield_check_at:
                    self.yield_check_at = now + YIELD_CHECK_SECONDS
                    if _with_database(lambda: campaign_waiting_for_worker(exclude=campaign.pk), what="waiting"):
                        # Another campaign waits for a worker that this one's dispatchers hold: hand
                        # over now, as at the deadline (the continuation queues behind its tasks).
                        logger.info("campaign %s: a dispatcher hands its worker to a waiting campaign", campaign.pk)
                        return "deadline"
        return ""

    def _nothing_to_claim(self) -> str:
        """Nothing claimable and nothing of ours in flight: done, or wait for retries that are not
        due yet and for other dispatchers' calls (requeueing their claims if they die)."""
        campaign_id = self.campaign_id
        if _with_database(lambda: campaign_finish_if_done(campaign_id=campaign_id), what="finishing"):
            return "finished"
        waiting = Recipient.objects.filter(campaign_id=campaign_id)
        queued = _with_database(lambda: waiting.filter(status=Recipient.Status.QUEUED).exists(), what="queue")
        if not queued and not _with_database(
            lambda: waiting.filter(status=Recipient.Status.SENDING).exists(), what="queue"
        ):
            return "idle"
        time.sleep(max(0.0, min(0.5, self.deadline - time.monotonic())))
        self.claim_after = float("-inf")
        return ""

    def _wind_down(self, reason: str) -> str:
        """Give back what was not sent, let the calls in flight end (answered or abandoned at the
        SES timeouts), record them all, then say why the task ends.

        At the deadline, and when the worker is stopping (SIGTERM), a new task takes this one's
        place if recipients are still queued: it is enqueued before the calls in flight end, so
        that a free worker (of this cluster or, when this one stops, of another) carries on at
        once. A stopping cluster's pusher stops first, so the new task waits in the broker.
        """
        self._release_pending()
        continued = False
        if reason in {"deadline", "shutdown"}:
            campaign_id = self.campaign_id
            queued = Recipient.objects.filter(campaign_id=campaign_id, status=Recipient.Status.QUEUED)
            if _with_database(queued.exists, what="queue"):
                dispatchers_start(campaign_id=campaign_id, count=1)
                continued = True
        while self.in_flight:
            self._collect(timeout=0.1)
            self._commit_if_due()
            if time.monotonic() - self.beat_at >= self.beat_every:
                self._beat()
        self._collect()
        self._commit()
        if reason == "stopped" or self.ses_paused:
            return "stopped"
        campaign_id = self.campaign_id
        if not continued:
            if _with_database(lambda: campaign_finish_if_done(campaign_id=campaign_id), what="finish"):
                return "finished"
            in_flight = Recipient.objects.filter(campaign_id=campaign_id, status=Recipient.Status.SENDING)
            if reason == "deadline" and _with_database(in_flight.exists, what="queue"):
                # Others' claims are still out: keep watching them, to requeue them if their
                # owner died (they end or go stale within SEND_STALE_SECONDS).
                dispatchers_start(campaign_id=campaign_id, count=1)
                continued = True
        if reason == "shutdown":
            return "stopped"
        return "continued" if continued else "idle"

    def _release_pending(self) -> None:
        unsent: dict[str, list[int]] = {}
        for token, recipient in self.pending:
            if recipient.pk in self.held.get(token, ()):
                unsent.setdefault(token, []).append(recipient.pk)
        self.pending.clear()
        self.slot = 0
        for token, ids in unsent.items():
            _with_database(
                lambda token=token, ids=ids: release(campaign_id=self.campaign_id, token=token, ids=ids),
                what="releasing unsent recipients",
            )
            self.held[token] -= set(ids)


class ExpressDispatcher(Dispatcher):
    """A single message's dispatcher run inside another dispatcher's loop (the express lane): it
    sends what it can claim now and returns; it never waits for retries or others' claims (the
    message's own dispatch task and the engine tick look after those), nor runs a lane itself."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.express_at = float("inf")

    def _nothing_to_claim(self) -> str:
        campaign_id = self.campaign_id
        if _with_database(lambda: campaign_finish_if_done(campaign_id=campaign_id), what="finishing"):
            return "finished"
        return "idle"


def express_due(*, exclude: int | None = None) -> list[int]:
    """Single messages (campaigns of kind "message") with a recipient due now, oldest first.

    Two small reads: the sending campaigns (status index), then their due recipients (work index).
    """
    sending = Campaign.objects.filter(status=Campaign.Status.SENDING, kind=Campaign.Kind.MESSAGE)
    if exclude is not None:
        sending = sending.exclude(pk=exclude)
    ids = list(sending.order_by("pk").values_list("pk", flat=True)[:EXPRESS_BATCH])
    if not ids:
        return []
    due = (
        Recipient.objects.filter(campaign_id__in=ids, status=Recipient.Status.QUEUED)
        .exclude(not_before__gt=timezone.now())
        .values_list("campaign_id", flat=True)
    )
    return sorted(set(due))


def _still_sending(campaign_id: int, *, wanting: bool = False) -> bool:
    """Beat the campaign (the tick sees its dispatchers alive); ``wanting``: it holds unsent messages,
    so it keeps its share of the rate (shares.py). False if it is no longer sending."""
    now = timezone.now()
    beats = {"heartbeat_at": now, "demand_at": now} if wanting else {"heartbeat_at": now}
    updated = Campaign.objects.filter(pk=campaign_id, status=Campaign.Status.SENDING).update(**beats)
    return bool(updated)


def organisation_weight(organisation_id: int) -> int:
    """The organisation's weight in the shares of the rate (site operators set it; 1 by default)."""
    weight = Organisation.objects.filter(pk=organisation_id).values_list("send_weight", flat=True).first()
    return max(int(weight or 1), 1)


def _skip_unreachable(
    campaign_id: int, list_ids: list[int] | None, token: str, recipients: list[Recipient]
) -> list[Recipient]:
    """Suppressed or no-longer-active addresses since the snapshot are skipped, not sent; so are
    contacts who left every list the campaign was sent to (e.g. on the preference page)."""
    emails = [recipient.email for recipient in recipients]
    suppressed = set(Suppression.objects.filter(email__in=emails).values_list("email", flat=True))
    left = _left_the_lists(list_ids, recipients)
    skipped = {
        recipient.pk
        for recipient in recipients
        if recipient.email in suppressed
        or recipient.contact_id in left
        or (recipient.contact is not None and recipient.contact.status != Contact.Status.ACTIVE)
    }
    if skipped:
        with transaction.atomic():
            moved = Recipient.objects.filter(id__in=skipped, claim_token=token, status=Recipient.Status.SENDING).update(
                status=Recipient.Status.SKIPPED,
                error="Unsubscribed or suppressed after the snapshot",
                claimed_at=None,
                claim_token=None,
            )
            outcomes_add(campaign_id=campaign_id, skipped=moved)
    return [recipient for recipient in recipients if recipient.pk not in skipped]


def _left_the_lists(list_ids: list[int] | None, recipients: list[Recipient]) -> set[int]:
    """Contacts no longer subscribed to any of ``list_ids`` (one query a batch).

    Only for campaigns addressed to lists alone (``list_ids`` is None otherwise): a segment may
    include a contact whatever its subscriptions, so with segments the snapshot stands (status
    and suppression still apply).
    """
    contact_ids = {recipient.contact_id for recipient in recipients if recipient.contact_id}
    if not list_ids or not contact_ids:
        return set()
    still = Subscription.objects.filter(
        contact_id__in=contact_ids, contact_list_id__in=list_ids, status=Subscription.Status.SUBSCRIBED
    ).values_list("contact_id", flat=True)
    return contact_ids - set(still)


def _send_one(recipient: Recipient, message) -> Outcome:
    try:
        ses_connection().send_messages([message])
    except Exception as error:  # classified below; nothing may escape a worker thread
        return classify_error(error, recipient)
    return Outcome(recipient, "sent", message_id=message.extra_headers.get("message_id", ""))


# --- recording ---------------------------------------------------------------------------------


def _record(campaign: Campaign, outcomes: list[Outcome]) -> bool:
    """Write a group of results in one transaction. False if SES asked to pause.

    post_office gets an ``Email`` (template + context: rendered on delivery) and a ``Log`` for
    every message SES accepted or refused for good; retries get theirs when they are final.
    Every write is conditional on the recipient's claim token, and the counters move by the rows
    actually written: a result for a recipient whose claim moved on changes nothing (its Email
    is dropped; the SES message id is logged, as that recipient gets the message twice).
    """
    now = timezone.now()
    final = [outcome for outcome in outcomes if outcome.kind in {"sent", "failed"}]
    again = [outcome for outcome in outcomes if outcome.kind not in {"sent", "failed"}]
    pause_reasons = [outcome.reason for outcome in outcomes if outcome.kind == "pause"]
    with transaction.atomic():
        # The counter row first, as the webhook's event batches take it first: the recipients'
        # rows are locked after it on both sides, never in the opposite order (PostgreSQL
        # deadlocked the two under load when the engine locked the recipients first).
        counters_locked(campaign_id=campaign.pk)
        outbox = OutboxEmail.objects.bulk_create(
            [
                OutboxEmail(
                    from_email=campaign.from_email,
                    to=[outcome.recipient.email],
                    template_id=campaign.email_template_id,
                    context=outcome.context,
                    status=OUTBOX_STATUS.sent if outcome.kind == "sent" else OUTBOX_STATUS.failed,
                    message_id=outcome.message_id or None,
                    backend_alias=settings.POST_OFFICE["DEFAULT_MAILER"],
                    headers={"X-SES-MESSAGE-TAGS": campaign_tags(campaign.pk, outcome.recipient.pk)},
                )
                for outcome in final
            ]
        )
        OutboxLog.objects.bulk_create(
            [
                OutboxLog(
                    email_id=email.pk,
                    status=OUTBOX_STATUS.sent if outcome.kind == "sent" else OUTBOX_STATUS.failed,
                    message=outcome.reason[:255],
                    exception_type="" if outcome.kind == "sent" else outcome.reason.partition(":")[0][:255],
                )
                for outcome, email in zip(final, outbox, strict=True)
            ]
        )
        written = _write_final(final, outbox, now)
        _drop_unwritten(campaign, final, outbox, written)
        sent = sum(status == Recipient.Status.SENT for status in written.values())
        outcomes_add(campaign_id=campaign.pk, sent=sent, failed=len(written) - sent)
        _write_retries(campaign.pk, again, now)
        # The organisation's usage row last (every writer takes it last): it is shared by all the
        # organisation's dispatchers and webhook batches, so it is held for the commit only.
        usage_add(organisation_id=campaign.organisation_id, sent=sent)
    if pause_reasons:
        try:
            campaign_pause(campaign_id=campaign.pk, reason=pause_reasons[0])
        except CampaignError:
            pass  # already paused or cancelled by someone else
        return False
    return True


def _write_final(final: list[Outcome], outbox: list[OutboxEmail], now) -> dict[int, str]:
    """Sent and failed recipients in one UPDATE … FROM (VALUES …) … RETURNING (PostgreSQL and
    SQLite >= 3.35); returns {recipient id: status} for the rows written.

    A row is written only under the claim that made the call, while it is in flight or requeued
    as stale but not yet claimed again (its owner was only cut off: what SES accepted counts).
    """
    if not final:
        return {}
    table = connection.ops.quote_name(Recipient._meta.db_table)
    rows, params = [], []
    for outcome, email in zip(final, outbox, strict=True):
        rows.append("(CAST(%s AS BIGINT), %s, %s, %s, CAST(%s AS BIGINT), %s)")
        status = Recipient.Status.SENT if outcome.kind == "sent" else Recipient.Status.FAILED
        params += [
            outcome.recipient.pk,
            str(status),
            outcome.message_id or None,
            outcome.reason[:500],
            email.pk,
            outcome.token,
        ]
    sql = (
        f"UPDATE {table} SET status = v.column2, ses_message_id = v.column3, error = v.column4, "
        f"outbox_email_id = v.column5, claimed_at = NULL, claim_token = NULL, "
        f"sent_at = CASE WHEN v.column2 = 'sent' THEN %s ELSE {table}.sent_at END "
        f"FROM (SELECT * FROM (VALUES {', '.join(rows)}) AS vals) AS v "
        f"WHERE {table}.id = v.column1 AND {table}.claim_token = v.column6 AND {table}.status IN (%s, %s) "
        "RETURNING id, status"
    )
    in_flight = [str(Recipient.Status.SENDING), str(Recipient.Status.QUEUED)]
    with connection.cursor() as cursor:
        cursor.execute(sql, [database_datetime(now), *params, *in_flight])
        return dict(cursor.fetchall())


def _drop_unwritten(campaign: Campaign, final: list[Outcome], outbox: list[OutboxEmail], written: dict) -> None:
    lost = [
        (outcome, email) for outcome, email in zip(final, outbox, strict=True) if outcome.recipient.pk not in written
    ]
    if not lost:
        return
    OutboxEmail.objects.filter(pk__in=[email.pk for _, email in lost]).delete()
    logger.warning(
        "campaign %s: results for %s recipients not written: their claim moved on (or this group was written "
        "already before the connection broke); SES message ids %s",
        campaign.pk,
        len(lost),
        ", ".join(outcome.message_id or "-" for outcome, _ in lost),
    )


def _write_retries(campaign_id: int, again: list[Outcome], now) -> None:
    """Back to the queue with a delay, still under their claim (or skipped if cancelled meanwhile)."""
    if not again:
        return
    owned = Q(pk__in=[])
    for outcome in again:
        owned |= Q(pk=outcome.recipient.pk, claim_token=outcome.token)
    held = Recipient.objects.filter(owned, status=Recipient.Status.SENDING)
    if skipped_if_cancelled(campaign_id, held):
        return
    for outcome in again:
        recipient = outcome.recipient
        attempts = recipient.attempts - (0 if outcome.counts_as_attempt and outcome.kind == "retry" else 1)
        Recipient.objects.filter(pk=recipient.pk, claim_token=outcome.token, status=Recipient.Status.SENDING).update(
            status=Recipient.Status.QUEUED,
            error=outcome.reason,
            claimed_at=None,
            claim_token=None,
            not_before=now + timedelta(seconds=outcome.delay),
            attempts=max(attempts, 0),
        )
