"""The host simulator: many simulated hosts, primary and backup storages in one process.

It serves the agent protocol of kvmagent/protocol.py over real HTTP (simulator.server), keeps a
faithful in-memory model of what real agents would hold (simulator.state), lets tests break any
command on purpose (simulator.faults) and offers an admin API to create hosts and storages, inject
faults and change VM states out of band (simulator.admin, simulator.client).

Nothing here imports the management node.
"""
