"""One module per top-level section of the config file, each exporting the
`validate_<section>(report, path, value, context)` that `config/load.py`'s `SECTIONS` table lists."""
