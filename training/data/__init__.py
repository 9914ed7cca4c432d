"""data of the trainer."""
