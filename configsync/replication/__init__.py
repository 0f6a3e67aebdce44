"""Replication between nodes: registry of replicated models, clock, protocol, transports."""
