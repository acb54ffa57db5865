"""Local stack launcher: a real Kafka (KRaft), Redis and Tryton on 127.0.0.1, no Docker needed."""
