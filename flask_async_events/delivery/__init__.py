"""One event's path, from ``publish()`` to the log row of each attempt. Read it in this order:

::

    host request ── publish() ──► outbox.py      an async_event row in the host's own transaction
                                     │ after the outermost commit
                                     ▼
                                  nudger.py      a thread asks for a trigger job (queues.py)
                                     ▼
    RQ event.trigger ──────────► fanout.py       resolve each payload once (payloads.py), match
                                     │           subscriptions, insert one delivery row each (the
                                     │           first batch claimed, and sent from here)
                                     ▼
    RQ event.delivery ─────────► deliver.py      claim due rows (a lease), check what can be sent
                                     │           (attempt.py: the notifier, the secrets and headers
                                     │           credentials.py decrypts), park what a rate limit or an open
                                     │           circuit holds back (flow.py), hand the sends over
                                     ▼
                                  dispatcher.py  a worker's threads: sender.py sends (per-endpoint
                                     │           cap), journal.py notes each attempt on local disk
                                     │           (spool.py) and in Redis
                                     ▼
                                  recording.py   a batch of results per transaction: a log row per
                                     │           attempt and its statistics (attempt_stats.py), the
                                     │           state verdicts.py decides (delivered, retrying at a
                                     │           time from retry.py, dead, cancelled); then a log line
                                     │           and a span end per attempt (attempt_log.py), and the
                                     │           endpoints' circuits hear of it (flow.py)
                                     ▼ retrying: RQ's scheduler starts the deliver job when due

``types.py`` holds the values that pass between these stages; ``rate_limits.py`` and
``circuits.py`` the shared state in Redis that ``flow.py`` consults; ``subscription_status.py`` the
enabling and disabling that delivery does itself (a 410, an endpoint failing too long);
``dialects.py`` the few statements that differ between databases. Modules here import nothing
from a later stage, nor from the operator tools, the web surfaces or one particular notifier.
"""
