"""Event contracts: the Avro schemas in ``avro_schemas/``, their evolution rules and wire format."""
