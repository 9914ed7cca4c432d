"""objectives of the trainer."""
