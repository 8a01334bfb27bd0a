"""zstack-ctl: run and manage the management node on this machine, without systemd.

Files under the MN home (MNConfig.home: --home, else $ZSTACK_HOME, else ~/.zstack):

    zstack.properties             settings as key=value lines (MNConfig field names)
    mn.pid                        pid of the running MN process (`zstack-ctl run`)
    logs/management-server.log    the daemon's stdout and stderr
    .ctl.lock                     serialises start/stop/restart (and upgrade, rollback, restore_db)
    backups/                      upgrade and database backups on a development install (an installed
                                  layout keeps them in R/backups: mn.upgrade, docs/operations.md)

Settings: defaults < zstack.properties < ZSTACK_* environment < command-line flags; `start` writes
the host, port, db_url and embedded_simulator it used to zstack.properties, so later commands
(status, stop, a plain start) find the same MN.
Exit codes: 0 success (status: running), 1 failure (status: not running), 2 usage error.

One module per group of commands (daemon, status, configure, upgrade, database, diagnostics), each
registering its subcommands with parser.Commands; settings, process, probe and node are what they
share.
"""

from mn.ops.ctl.parser import build_parser, main
from mn.ops.ctl.settings import CtlError, Paths

__all__ = ["CtlError", "Paths", "build_parser", "main"]
