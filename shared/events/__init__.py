"""Events: contracts, the CloudEvents wire codec, the outbox and inbox, consumers, and the local Broker."""
