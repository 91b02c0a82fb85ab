"""Services shared by the CLI, the REST API and the admin pages: subscriptions, ping, replay and
recovery, retention, status, the trace of a delivery and the attempt log's search. They read and
write through the delivery stages' own functions, never around them."""
