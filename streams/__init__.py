"""Stream processors (Faust): normalize raw events into the canonical model."""
