"""One event's path, from ``publish()`` to the log row of each attempt. Read it in this order:

::

    host request ── publish() ──► outbox.py      an async_event row in the host's own transaction
                                     │ after the outermost commit
                                     ▼
                                 ../nudger.py    a thread asks for a trigger job (../queues.py: RQ's
                                     │           queues, infrastructure beside the stages)
                                     ▼
    RQ event.trigger ──────────► fanout.py       resolve each payload once (payloads.py), match
                                     │           subscriptions, insert one delivery row each (the
                                     │           first batch inserted claimed, handed to
                                     │           deliver.send_claimed as a deliver job's claim is)
                                     ▼
    RQ event.delivery ─────────► deliver.py      claim due rows (claims.py: a token and a lease),
                                     │           check what can be sent (attempt.py: the notifier,
                                     │           the secrets and headers credentials.py decrypts),
                                     │           park what a rate limit or an open circuit holds
                                     │           back (flow.py), hand the sends over
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

``types.py`` holds the values that pass between these stages: a claim (``Claimed``) and how it
ends, each a frozen value carrying its own data: an attempt's ``Outcome``, ``Released`` (handed
back unsent, due now) or ``Parked`` (due later); ``recording.record`` takes a batch of them.
``health.py`` says what an outcome tells of its endpoint (``Said``): the one model the
subscription's health, the circuits and auto-disable share, so a payload that does not resolve
is never the endpoint's fault. ``rate_limits.py`` and
``circuits.py`` the shared state in Redis that ``flow.py`` consults; ``subscription_status.py`` the
enabling and disabling that delivery does itself (a 410, an endpoint failing too long);
``dialects.py`` the few statements that differ between databases. A stage hands work on only to
the next, through its entry; what comes back goes through the database and RQ. One reference
points back on purpose: the operational events recording notices (an endpoint failing, a
subscription disabled) are events, written to the outbox in the same transaction as what they
report, so a notice is never lost nor sent for a rollback. Modules here import nothing from the
operator tools, the web surfaces or one particular notifier.
"""
