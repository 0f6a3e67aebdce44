"""The NATS follower: the worker-side process that keeps this node on the group's JetStream
stream (``configsync nats follow``, the Procfile's ``nats`` line).

``service`` holds what it does once (a pull cycle through the node's durable consumer, a
snapshot, the consumer's lag for ``status``, the admin and ``/metrics``); ``loop`` is the process
around it (wake-ups, back-off, periodic snapshots, idling when NATS is not configured).
"""
