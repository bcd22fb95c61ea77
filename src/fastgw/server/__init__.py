"""Process layer: the master (supervision, signals, reload, admin) and the workers it forks."""
