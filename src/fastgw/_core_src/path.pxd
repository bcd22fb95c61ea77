# Path normalization (DESIGN §8 "Route matching", "Paths, further").
#
# Call order: once per request, on the path part of the target (no query), before routing and
# before anything reads the path; the result is what is routed and forwarded. Returns `raw` itself
# when it is already normal (no allocation); raises PathError (a ValueError) for anything that must
# be refused with 400.

cpdef bytes normalize_path(bytes raw)
