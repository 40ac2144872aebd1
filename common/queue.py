"""Putting work on the django-q2 queue through one broker per process.

django-q2's `async_task` builds a new broker for every call unless it is given one, and with Redis that is a
new connection pool and a new TCP connection per task (django_q/tasks.py, brokers/redis_broker.py). On the
callback path that was most of the cost of an answer. A process keeps one broker: redis-py's pool is
thread-safe and reconnects after an outage; a forked child makes its own.
"""

import os
import threading

_brokers: dict[int, object] = {}
_lock = threading.Lock()


def broker():
    from django_q.brokers import get_broker

    pid = os.getpid()
    with _lock:
        if pid not in _brokers:
            _brokers.clear()
            _brokers[pid] = get_broker()
        return _brokers[pid]


def enqueue(func: str, *args, **options) -> str:
    """`django_q.tasks.async_task(func, *args, **options)` on this process's broker."""
    from django_q.tasks import async_task

    return async_task(func, *args, broker=broker(), **options)
