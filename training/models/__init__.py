"""models of the trainer."""
