"""Whether this worker process has been asked to stop (SIGTERM); the engine checks it between messages.

A ``qcluster`` must stop promptly and cleanly when every one of its processes gets SIGTERM at
once: systemd's default stop (``KillMode=control-group``), ``kill -TERM -<pgid>``, or a terminal's
Ctrl-C (SIGINT to the foreground group). django-q2 expects the signal at the cluster's main
process only: that process sets ``stop_event`` and the sentinel stops in order (the pusher first,
then one STOP per worker, taken after its current task, then the monitor). But the sentinel
resets SIGTERM to its default action and the processes it forks inherit that, so a group SIGTERM
killed them on the spot: the running tasks died mid-send (their claims waited for the stale
reclaim, tasks the pusher had fetched from Redis were lost) and the main process hung for ever
in ``stop_event.set()``, whose ``notify_all`` waits for the dead sentinel to acknowledge.

``install`` (from ``CampaignsConfig.ready``) mends both ends without touching django-q2's files:

- the sentinel, and the pusher and monitor it forks, ignore SIGTERM and stop when the main
  process tells them to (``django_q.cluster.Sentinel`` is replaced by a subclass for that);
- a worker that gets SIGTERM or SIGINT calls ``request_stop``: the dispatch task it runs stops
  between messages, releases what it claimed and returns, and tasks it takes afterwards return
  at once; if it is still inside a task five seconds before ``SEND_TASK_SECONDS`` are up (a task
  that does not check ``stop_requested``), it exits there, as a crash would, so that the whole
  cluster is gone within ``SEND_TASK_SECONDS``. (Signal the group, as systemd does, or the main
  process, as django-q2 documents; a worker signalled alone stops its task and carries on.)
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from django.conf import settings

logger = logging.getLogger(__name__)

_stop = threading.Event()
_in_task = threading.Event()
# Time the sentinel and the main process need to wind down once the last worker has gone (the
# main process alone spends 1-3 s of CPU tearing its interpreter down on a busy machine).
_WIND_DOWN_SECONDS = 5.0


def stop_requested() -> bool:
    return _stop.is_set()


def request_stop() -> None:
    _stop.set()


def install() -> None:
    """Make a ``qcluster`` stop in order on a SIGTERM to all its processes (see the module docstring)."""
    # Imported here: django_q.cluster sets Django up itself if imported before the app registry.
    from django_q import cluster
    from django_q.signals import post_execute_in_worker, post_spawn, pre_execute

    if not issubclass(cluster.Sentinel, _OrderlySentinelMixin):
        # Cluster.start looks the class up by this name when it forks the sentinel.
        cluster.Sentinel = type("Sentinel", (_OrderlySentinelMixin, cluster.Sentinel), {})
    post_spawn.connect(_worker_started, dispatch_uid="common.shutdown.worker_started")
    pre_execute.connect(_task_started, dispatch_uid="common.shutdown.task_started")
    post_execute_in_worker.connect(_task_ended, dispatch_uid="common.shutdown.task_ended")


class _OrderlySentinelMixin:
    def start(self) -> None:
        # Sentinel.__init__ has just reset SIGTERM to its default; the main process stops us in
        # order instead. The pusher and the monitor forked from here inherit this.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        super().start()


def _worker_started(sender, proc_name: str, **kwargs) -> None:
    signal.signal(signal.SIGTERM, _stop_worker)
    signal.signal(signal.SIGINT, _stop_worker)


def _task_started(sender, **kwargs) -> None:
    _in_task.set()


def _task_ended(sender, **kwargs) -> None:
    _in_task.clear()


def _stop_worker(signum: int, frame) -> None:
    if _stop.is_set():
        return
    request_stop()
    grace = max(1.0, settings.SEND_TASK_SECONDS - _WIND_DOWN_SECONDS)
    logger.info(
        "Worker %s stopping (%s): its task ends after the message in hand", os.getpid(), signal.strsignal(signum)
    )
    threading.Thread(target=_backstop, args=(grace,), name="stop-backstop", daemon=True).start()


def _backstop(grace: float) -> None:
    """Inside a task that ignores ``stop_requested`` after ``grace``: end the worker here, as a
    crash would. Between tasks: a stopping cluster would have sent its STOP long ago, so the
    signal was for this worker alone; it carries on (killing it there could leave the task
    queue's lock held, and every other worker waiting on it)."""
    threading.Event().wait(grace)
    if _in_task.is_set():
        logger.warning("Worker %s still in its task %.0f s after SIGTERM: exiting now", os.getpid(), grace)
        logging.shutdown()
        os._exit(1)
    _stop.clear()
    logger.info("Worker %s: its cluster is not stopping; taking tasks again", os.getpid())
