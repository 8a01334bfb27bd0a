#!/usr/bin/env bash
# Bootstrap of a ZStack-design cloud in Python, from this checkout.
#
#   ./install.sh -s      install, then start a proof-of-concept cloud: the management node with
#                        the embedded host simulator, on SQLite
#   ./install.sh         install only
#
# It checks the system (Debian, Python >= 3.11 with venv), creates a virtualenv under PREFIX,
# pip-installs the project and links zstack-ctl and zstack-cli into BINDIR.
# The Ansible-driven installer (real KVM hosts, PostgreSQL/MariaDB, several MNs) comes later.
set -euo pipefail

usage() {
    cat <<EOF
usage: $0 [-s] [-p PREFIX] [-b BINDIR] [-h]
  -s         start a proof-of-concept cloud: management node + embedded simulator
  -p PREFIX  install prefix; the venv goes to PREFIX/venv
             (default: /opt/zstack as root, \$HOME/.zstack otherwise)
  -b BINDIR  where to link zstack-ctl and zstack-cli
             (default: /usr/local/bin as root, \$HOME/.local/bin otherwise)
  -h         this help
Environment: PYTHON (default python3), ZSTACK_HOME (MN home, default ~/.zstack),
ZSTACK_PORT (API port, default 8080).
EOF
}

die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "==> $*"; }

SIMULATOR=0
if [[ $(id -u) -eq 0 ]]; then
    PREFIX=/opt/zstack
    BINDIR=/usr/local/bin
else
    PREFIX=$HOME/.zstack
    BINDIR=$HOME/.local/bin
fi
while getopts ":sp:b:h" opt; do
    case $opt in
        s) SIMULATOR=1 ;;
        p) PREFIX=$OPTARG ;;
        b) BINDIR=$OPTARG ;;
        h) usage; exit 0 ;;
        :) usage >&2; die "option -$OPTARG needs a value" ;;
        *) usage >&2; echo "install.sh: unknown option -$OPTARG" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
if [[ $# -gt 0 ]]; then
    usage >&2
    echo "install.sh: unexpected argument '$1'" >&2
    exit 2
fi
SRC=$(cd "$(dirname "$0")" && pwd)
[[ -f $SRC/pyproject.toml ]] || die "run me from the project checkout ($SRC has no pyproject.toml)"

# ---- the system
[[ $(uname -s) == Linux ]] || die "the management node runs on Linux (found $(uname -s))"
if [[ -f /etc/debian_version ]]; then
    say "Debian $(cat /etc/debian_version)"
else
    echo "install.sh: warning: not Debian; continuing, but only Debian 12 is tested" >&2
fi
PYTHON=${PYTHON:-python3}
command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install Python 3.11+ (Debian 12: apt-get install python3)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$PYTHON is $("$PYTHON" -V 2>&1); Python 3.11 or newer is needed"
if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
    [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null \
        || die "$PYTHON cannot create virtualenvs: install python3-venv (as root: apt-get install python3-venv)"
    say "apt-get install python3-venv"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv || die "apt-get install python3-venv failed"
    "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || die "$PYTHON still cannot create virtualenvs"
fi

# ---- the venv and the project
VENV=$PREFIX/venv
if [[ ! -x $VENV/bin/python ]]; then
    say "creating the virtualenv $VENV"
    mkdir -p "$PREFIX"
    "$PYTHON" -m venv "$VENV"
fi
say "installing the project from $SRC (pip)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "$SRC" || die "pip install failed"
mkdir -p "$BINDIR"
for tool in zstack-ctl zstack-cli; do
    ln -sf "$VENV/bin/$tool" "$BINDIR/$tool"
done
say "installed: $BINDIR/zstack-ctl, $BINDIR/zstack-cli"
case ":$PATH:" in
    *":$BINDIR:"*) ;;
    *) echo "install.sh: note: $BINDIR is not on your PATH; add it, or call $BINDIR/zstack-ctl" >&2 ;;
esac
CTL=$BINDIR/zstack-ctl

if [[ $SIMULATOR -eq 0 ]]; then
    echo
    echo "Start a proof-of-concept cloud with: zstack-ctl start --simulator (or rerun: $0 -s)"
    exit 0
fi

# ---- the proof of concept
if "$CTL" status >/dev/null 2>&1; then
    say "a management node is running: restarting it on the new code"
    "$CTL" restart --simulator || die "zstack-ctl restart failed (see the message above)"
else
    say "starting the management node with the embedded simulator"
    "$CTL" start --simulator || die "zstack-ctl start failed (see the message above)"
fi
URL=$("$CTL" status | sed -n 's/^url: *//p')
cat <<EOF

ZStack (Python) is running: $URL
  account:  admin
  password: password
Try (the demo zone above is ready for VMs):
  zstack-cli LogInByAccount accountName=admin password=password
  zstack-cli QueryVmInstance
  zstack-cli CreateVmInstance name=vm1 ...   (the full command is printed above)
Manage it with: zstack-ctl status | stop | restart   (log: zstack-ctl status shows where)
EOF
