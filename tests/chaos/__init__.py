"""Proof under faults: the reference model, the in-process state machine, the node harness."""
