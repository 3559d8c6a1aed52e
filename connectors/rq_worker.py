"""RQ workers that ride out a Redis outage instead of exiting.

RQ's work loop quits on any exception outside the job function ("found an unhandled exception,
quitting"), so a Redis restart or failover used to stop every busy worker. Interlock's state is
in the database: the job that was running has already recorded its outcome (or keeps its lease
until it does), and the reconciler re-enqueues whatever Redis lost. So a worker that loses Redis
logs one line, waits for Redis with backoff, and carries on. A FLUSHALL mid-job is the same
event seen from the other side (RQ's bookkeeping finds its job gone) and is handled alike.
"""

import logging
import threading
import time

from redis.exceptions import RedisError
from rq import SimpleWorker, Worker
from rq.exceptions import InvalidJobOperation, NoSuchJobError

logger = logging.getLogger(__name__)
# Set when this process's worker is asked to stop: a running batch claims no more jobs.
shutdown_requested = threading.Event()

# Redis gone, or Redis lost RQ's record of the job (flushed, restarted without persistence).
REDIS_LOST = (RedisError, InvalidJobOperation, NoSuchJobError)
# How long the command-channel listener waits per poll, which bounds how long stopping takes.
PUBSUB_WAKE_SECONDS = 1.0


class OutageTolerant:
    """Mixed into an RQ worker class: Redis errors around a job are logged, not fatal."""

    stop_requested = False

    def request_stop(self, signum, frame):
        self.stop_requested = True
        shutdown_requested.set()
        super().request_stop(signum, frame)

    def subscribe(self):
        """RQ's subscription to its command channel, with a listener that wakes every second.

        RQ listens with a 60 s wait, and redis-py (8.x) joins that listener without a timeout
        when the worker unsubscribes: a worker that stops before the listener has read its
        subscription confirmation (a short burst, a quick shutdown) hung for up to a minute.
        """
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_WAKE_SECONDS,
            daemon=True,
            exception_handler=self._pubsub_exception_handler,
        )

    def execute_job(self, job, queue):
        try:
            super().execute_job(job, queue)
        except REDIS_LOST as error:
            redis_lost(job, error)

    def handle_exception(self, job, *exc_info):
        """RQ's bookkeeping after the job (not the job) found Redis gone or the job flushed."""
        if isinstance(exc_info[1], REDIS_LOST):
            redis_lost(job, exc_info[1])
        else:
            super().handle_exception(job, *exc_info)

    def heartbeat(self, *args, **kwargs):
        try:
            super().heartbeat(*args, **kwargs)
        except RedisError as error:
            logger.warning("cannot reach Redis for the worker heartbeat (%s)", type(error).__name__)

    # The loop's own Redis calls between jobs: wait for Redis instead of quitting.
    def check_for_suspension(self, burst):
        try:
            super().check_for_suspension(burst)
        except RedisError:
            wait_for_redis(self.connection.ping)

    def run_maintenance_tasks(self):
        try:
            super().run_maintenance_tasks()
        except RedisError:
            wait_for_redis(self.connection.ping)


def redis_lost(job, error: Exception) -> None:
    logger.warning(
        "Redis lost RQ job %s (%s); the database keeps its jobs' state and the reconciler "
        "re-enqueues what did not finish",
        job.id,
        type(error).__name__,
    )


class InterlockSimpleWorker(OutageTolerant, SimpleWorker):
    pass


class InterlockForkWorker(OutageTolerant, Worker):
    pass


WORKER_CLASSES = {"simple": InterlockSimpleWorker, "fork": InterlockForkWorker}


def work_until_stopped(make_worker, *, burst: bool, ping) -> None:
    """Run workers until a stop is requested (or, in burst mode, the queue is empty). A worker
    whose loop ended for any other reason is replaced once `ping` reaches Redis. `make_worker(n)`
    builds the n-th worker: each gets a name of its own, as the one before may not have been
    able to register its death."""
    started = 0
    shutdown_requested.clear()
    while True:
        try:
            worker = make_worker(started)  # RQ's constructor talks to Redis already
        except RedisError:
            wait_for_redis(ping)
            continue
        started += 1
        try:
            worker.work(burst=burst, with_scheduler=False, logging_level="WARNING")
        except RedisError as error:  # its teardown could not reach Redis
            logger.warning("worker %s lost Redis (%s)", worker.name, type(error).__name__)
        if worker.stop_requested or (burst and reachable(ping)):
            return
        wait_for_redis(ping)
        logger.warning("worker %s stopped unexpectedly; starting another", worker.name)
        time.sleep(min(30, 0.5 * started))  # a loop that keeps failing is not a busy loop


def wait_for_redis(ping, *, max_wait: float = 30.0) -> None:
    """Return once Redis answers, trying with exponential backoff; one log line per try."""
    wait = 0.5
    while not reachable(ping):
        logger.warning("Redis unreachable; trying again in %.1f s", wait)
        time.sleep(wait)
        wait = min(wait * 2, max_wait)


def reachable(ping) -> bool:
    try:
        ping()
    except RedisError:
        return False
    return True
