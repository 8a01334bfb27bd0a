#!/usr/bin/env bash
# Make this checkout ready to develop and test: the Debian packages the test tiers need, and .venv
# with the project installed editable with its test and lint extras, pinned by constraints.txt.
# Only what is missing is done: with everything present it takes about a second (dpkg-query, and
# a stamp in .venv recording the hash of pyproject.toml + constraints.txt that pip last installed).
# ./run-tests.sh and .ci/run call it.
#
#   tools/setup-dev.sh                        set up what is missing
#   tools/setup-dev.sh --refresh-constraints  resolve the newest versions pyproject.toml allows in a
#                                             fresh venv and write them to constraints.txt
# Environment: VENV_PYTHON, the Python .venv is made with (default python3.11); ZSTACK_SETUP_APT=0
# leaves the Debian packages alone.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "[setup] $*"; }
die() { echo "setup-dev.sh: $*" >&2; exit 1; }

REFRESH=0
case "${1:-}" in
    "") ;;
    --refresh-constraints) REFRESH=1 ;;
    *) echo "setup-dev.sh: unknown argument '$1' (usage: tools/setup-dev.sh [--refresh-constraints])" >&2; exit 2 ;;
esac

VENV=.venv
STAMP=$VENV/.zstack-setup
CONSTRAINTS=constraints.txt
EXTRAS=".[test,lint]"

VENV_PYTHON=${VENV_PYTHON:-$(command -v python3.11 || command -v python3 || true)}
[[ -n $VENV_PYTHON ]] || die "python3.11 not found on PATH (Debian 12: apt-get install python3 python3-venv)"
"$VENV_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
    || die "$VENV_PYTHON is $("$VENV_PYTHON" -V 2>&1): the project needs Python 3.11 or newer (set VENV_PYTHON=...)"

# ---- Debian packages: the agent's tools, and for the system tier libvirt/QEMU (TCG guests), the
# agent's Python, SSH for Ansible and what the test image is built from.
packages=(iproute2 iptables curl
    qemu-system-x86 qemu-utils libvirt-daemon-system libvirt-clients python3-libvirt python3-venv
    openssh-server openssh-client sshpass sudo linux-image-amd64 busybox-static cpio
    syslinux syslinux-common mtools dosfstools dnsmasq-base bridge-utils)

debian_packages() {
    if [[ ${ZSTACK_SETUP_APT:-1} == 0 ]]; then
        log "Debian packages: left alone (ZSTACK_SETUP_APT=0)"
        return 0
    fi
    if ! command -v dpkg-query >/dev/null; then
        log "not a Debian system: install the equivalents of ${packages[*]} yourself"
        return 0
    fi
    local missing=() p sudo=""
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        log "Debian packages present (${#packages[@]})"
        return 0
    fi
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null && sudo -n true 2>/dev/null \
            || die "missing Debian packages: ${missing[*]}; install them as root (apt-get install ...), \
or set ZSTACK_SETUP_APT=0 to go on without them (the system tier then fails)"
        sudo="sudo -n"
    fi
    log "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq || log "apt-get update failed (continuing: the install decides)"
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || die "apt-get could not install ${missing[*]}"
}

setup_hash() { cat pyproject.toml "$CONSTRAINTS" | sha256sum | cut -d' ' -f1; }

python_env() {
    [[ -f $CONSTRAINTS ]] || die "$CONSTRAINTS is missing: tools/setup-dev.sh --refresh-constraints makes it"
    if [[ ! -x $VENV/bin/python ]]; then
        log "creating $VENV with $VENV_PYTHON ($("$VENV_PYTHON" -V 2>&1))"
        "$VENV_PYTHON" -m venv "$VENV" || die "$VENV_PYTHON -m venv failed (Debian: apt-get install python3-venv)"
    fi
    local want
    want=$(setup_hash)
    if [[ -f $STAMP && $(cat "$STAMP") == "$want" ]]; then
        log "$VENV up to date with pyproject.toml and $CONSTRAINTS"
        return 0
    fi
    log "pip install -c $CONSTRAINTS -e $EXTRAS"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$CONSTRAINTS" -e "$EXTRAS" \
        || die "pip install into $VENV failed (see above)"
    echo "$want" >"$STAMP"
}

refresh_constraints() {
    REFRESH_TMP=$(mktemp -d /tmp/zstack-constraints.XXXXXX)
    trap 'rm -rf "$REFRESH_TMP"' EXIT
    local venv=$REFRESH_TMP/venv
    log "resolving $EXTRAS in a fresh venv ($("$VENV_PYTHON" -V 2>&1))"
    "$VENV_PYTHON" -m venv "$venv"
    # Editable, as .venv has it: a regular install would build into the checkout's build/.
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$EXTRAS"
    {
        echo "# The exact versions the project is tested with: every dependency of pyproject.toml and its"
        echo "# extras, as pip resolved them on $("$VENV_PYTHON" -V 2>&1) ($(date -u +%Y-%m-%d))."
        echo "# Used as pip constraints by tools/setup-dev.sh (.venv), install.sh and zstack-ctl upgrade."
        echo "# Refresh: tools/setup-dev.sh --refresh-constraints, then ./run-tests.sh, then commit."
        "$venv/bin/python" -m pip freeze --all --disable-pip-version-check --exclude zstack --exclude pip
    } >"$CONSTRAINTS.new"
    mv "$CONSTRAINTS.new" "$CONSTRAINTS"
    log "wrote $CONSTRAINTS ($(grep -vc '^#' "$CONSTRAINTS") pins); the next setup reinstalls $VENV with them"
}

if [[ $REFRESH -eq 1 ]]; then
    refresh_constraints
    exit 0
fi
debian_packages
python_env
