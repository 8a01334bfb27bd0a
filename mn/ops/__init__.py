"""Operator tooling: zstack-ctl (ctl), zstack-cli (cli), upgrades that roll back (upgrade, release),
database backups (backup), diagnostics (collect_log) and the demo zone (demo).

These are clients of the management node: they reach it over HTTP (mn.client) or run it as a
process; nothing in the MN's server side imports them.
"""
