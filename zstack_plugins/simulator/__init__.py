"""Simulated hosts and storages: AddSimulatorHost, AddSimulatorPrimaryStorage,
AddSimulatorBackupStorage, served by the simulator (`simulator/`, the MN's `simulator_url`).

The simulator itself is part of the core (it serves the whole agent protocol, and each plugin adds
its commands to it); this plugin is the MN's side: the APIs that declare simulated resources, the
hypervisor and storage types, and the simulator forgetting what is deleted here.
"""

from zstack_plugins import Plugin

PLUGIN = Plugin(
    name="simulator",
    summary="simulated hosts, primary and backup storages (AddSimulatorHost, ...) served by the simulator",
    mn=("zstack_plugins.simulator.hosts", "zstack_plugins.simulator.storage"),
)
