"""Data path: the prompt pool, the sharded tensor cache (text embeddings, teacher samples), regions."""
