"""Aggregation routes (`aggregate:` in a route, DESIGN §3): one request fans out to several upstream
calls, whose JSON answers are merged into one object keyed by call name.

`responder.AggregateResponder` is the route's terminal responder (request phase RESPOND); the
templates of its calls are `template.py`, which config validation
(`fastgw.config.sections.aggregate`) shares. Nothing is imported here, so that validating a config
does not load the responder's dependencies.
"""
