"""Events: the outbox, consumers, and the local stand-in for the Broker."""
