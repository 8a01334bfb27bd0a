"""ZStack's API catalogue, the wire specification: every API's name, parameters and REST route, every
inventory's fields and query expansions (catalog.py), parameter validation derived from it (params.py)
and the query-condition syntax (conditions.py). It knows nothing of handlers, transports or the database.
"""
