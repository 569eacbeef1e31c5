"""History of the contract's messages in ClickHouse (embedded chDB or a server), exactly once."""
