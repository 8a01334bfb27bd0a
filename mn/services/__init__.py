"""API handlers, one module per resource family. Importing a module registers its handlers."""

import importlib

MODULES = [
    "identity", "management", "tag", "globalconfig_api", "zone", "cluster", "host", "primary_storage",
    "backup_storage", "image", "offering", "l2", "l3", "vm", "volume", "capacity", "vip", "eip",
    "kvm_host", "local_storage", "sftp_backup_storage",
]


def load_all() -> None:
    for name in MODULES:
        try:
            importlib.import_module(f"mn.services.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"mn.services.{name}":
                raise
