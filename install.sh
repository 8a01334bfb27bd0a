#!/usr/bin/env bash
# ZStack (Python) installer: the management node (MN) and its database on this machine.
#
#   curl -fsSL <url>/install.sh | bash -s -- -s     piped: fetches the release tarball published
#                                                   beside it (or the one given with -f), unpacks it
#                                                   under the install root and runs its install.sh
#   bash install.sh -s                              from a checkout or an unpacked release
#
# Steps: check the system (nothing is changed before every check passed), Debian packages,
# a virtualenv with ansible-core, the release under R/releases/<version>, then the Ansible
# playbook installer/site.yml run locally (roles db and mn), which installs the wheel with its
# extras `installer` (ansible-core, for AddKVMHost) and the database's driver. pip installs are
# pinned by the release's constraints.txt (the versions the release was tested with). Every step
# is idempotent: a second run changes nothing, and a failed step is fixed by rerunning the same
# command.
# Layout and flags: docs/install.md.
set -euo pipefail

# Set by tools/build_release.py in the install.sh it publishes beside the release tarball.
RELEASE_VERSION=""
RELEASE_SHA256=""
RELEASE_BASE_URL=""

# Installed before the wheel, to run the playbook: the range of the `installer` extra in
# pyproject.toml (tests/unit/test_pins.py checks that they agree).
ANSIBLE_CORE="ansible-core>=2.15,<2.20"

usage() {
    cat <<'EOF'
usage: install.sh [-a | -s | -u] [options]
  -a            all-in-one: the MN, and this machine prepared as a KVM host (when it can virtualise)
  -s            simulator proof of concept: the MN with the embedded host simulator and a demo zone
  -u            upgrade an existing installation to this release (zstack-ctl upgrade)
  (none)        the MN alone, ready for real hosts (AddKVMHost)
  -D            drop the database first (all data lost)
  -P PASSWORD   the database server's root password (default: local socket/trust access)
  -p PASSWORD   the password of the database user zstack (default: zstack.password)
  -I IP         management IP: the MN listens and is reached there (default: this machine's
                address on its default route, else 127.0.0.1)
  -r DIR        install root (default: /usr/local/zstack)
  -y URL        HTTP(S) proxy for apt, pip and downloads
  -q            quiet: print failures and the final summary only
  -z            do not start the MN (install and configure only)
  -f URL|FILE   the release tarball (or the base URL it is published under) to install
  --db sqlite|postgresql|mariadb
                database (default: sqlite; with --db-url: from its scheme)
  --db-url URL  use an existing database server (SQLAlchemy URL; user and schema must exist)
  --db-name NAME
                the database to create on the local server (default: zstack)
  --port N      API port (default: 8080)
  --simulator-port N
                the embedded simulator's port with -s (default: 8090)
  --host-user USER, --host-password PW
                with -a: the SSH login on this machine; the installer then adds it as a KVM host
                itself (AddKVMHost through the started MN; default user: root)
  --bin-dir DIR where the zstack-ctl and zstack-cli commands go (default: /usr/local/bin)
  --log-dir DIR the install log and the MN log (default: /var/log/zstack)
  -h, --help    this help
EOF
}

# ---- settings (flags) ---------------------------------------------------------------------------
MODE=mn                # mn | allinone | simulator
UPGRADE=0
DROP_DB=0
QUIET=0
NO_START=0
DB_TYPE=""
DB_URL=""
DB_NAME=zstack
DB_PASSWORD=zstack.password
DB_ROOT_PASSWORD=""
MGMT_IP=""
ROOT=/usr/local/zstack
PROXY=""
RELEASE_URL=""
API_PORT=8080
SIM_PORT=8090
BIN_DIR=/usr/local/bin
LOG_DIR=/var/log/zstack
HOST_USER=root
HOST_PASSWORD=""

T0=$SECONDS
LOG_FILE=""
STEP=""
STEP_T0=0

fail() {  # fail CODE MESSAGE: a clear message and a non-zero exit
    local code=$1
    shift
    echo "install.sh: $*" >&2
    [[ -n $LOG_FILE && -f $LOG_FILE ]] && printf '%s ERROR %s\n' "$(date '+%F %T')" "$*" >>"$LOG_FILE"
    exit "$code"
}

usage_error() { echo "install.sh: $*" >&2; echo "run 'install.sh -h' for the options" >&2; exit 2; }

need_value() { [[ $# -ge 2 && -n $2 ]] || usage_error "option $1 needs a value"; }

parse_args() {
    local arg
    while [[ $# -gt 0 ]]; do
        arg=$1
        case $arg in
            --*=*) set -- "${arg%%=*}" "${arg#*=}" "${@:2}"; continue ;;
            -[asuDqzh][asuDqzh]*)  # bundled switches: -sq
                local bundle=${arg#-} expanded=() i
                for ((i = 0; i < ${#bundle}; i++)); do expanded+=("-${bundle:i:1}"); done
                set -- "${expanded[@]}" "${@:2}"
                continue ;;
        esac
        case $arg in
            -a) MODE=allinone ;;
            -s) MODE=simulator ;;
            -u) UPGRADE=1 ;;
            -D) DROP_DB=1 ;;
            -q) QUIET=1 ;;
            -z) NO_START=1 ;;
            -h | --help) usage; exit 0 ;;
            -P) need_value "$@"; DB_ROOT_PASSWORD=$2; shift ;;
            -p) need_value "$@"; DB_PASSWORD=$2; shift ;;
            -I) need_value "$@"; MGMT_IP=$2; shift ;;
            -r) need_value "$@"; ROOT=$2; shift ;;
            -y) need_value "$@"; PROXY=$2; shift ;;
            -f) need_value "$@"; RELEASE_URL=$2; shift ;;
            --db) need_value "$@"; DB_TYPE=$2; shift ;;
            --db-url) need_value "$@"; DB_URL=$2; shift ;;
            --db-name) need_value "$@"; DB_NAME=$2; shift ;;
            --port) need_value "$@"; API_PORT=$2; shift ;;
            --simulator-port) need_value "$@"; SIM_PORT=$2; shift ;;
            --bin-dir) need_value "$@"; BIN_DIR=$2; shift ;;
            --log-dir) need_value "$@"; LOG_DIR=$2; shift ;;
            --host-user) need_value "$@"; HOST_USER=$2; shift ;;
            --host-password) need_value "$@"; HOST_PASSWORD=$2; shift ;;
            *) usage_error "unknown option '$arg'" ;;
        esac
        shift
    done
}

valid_port() { [[ $1 =~ ^[0-9]+$ ]] && ((10#$1 >= 1 && 10#$1 <= 65535)); }

check_flags() {
    [[ $UPGRADE -eq 1 && $DROP_DB -eq 1 ]] && usage_error "-u keeps the data: it cannot be combined with -D"
    valid_port "$API_PORT" || usage_error "--port must be a port number (1-65535), got '$API_PORT'"
    valid_port "$SIM_PORT" || usage_error "--simulator-port must be a port number, got '$SIM_PORT'"
    [[ -z $HOST_PASSWORD || $MODE == allinone ]] || usage_error "--host-password goes with -a (all-in-one)"
    [[ $API_PORT != "$SIM_PORT" ]] || usage_error "the API port and the simulator port must differ ($API_PORT)"
    [[ $DB_NAME =~ ^[A-Za-z_][A-Za-z0-9_]{0,62}$ ]] \
        || usage_error "--db-name must be a plain identifier (letters, digits, _), got '$DB_NAME'"
    if [[ -n $DB_URL ]]; then
        local scheme=${DB_URL%%:*}
        case $scheme in
            sqlite) : "${DB_TYPE:=sqlite}" ;;
            postgresql | postgresql+*) : "${DB_TYPE:=postgresql}" ;;
            mysql | mysql+* | mariadb | mariadb+*) : "${DB_TYPE:=mariadb}" ;;
            *) usage_error "--db-url must be a sqlite, postgresql or mysql URL, got '$scheme:...'" ;;
        esac
        case $DB_TYPE:$scheme in
            sqlite:sqlite | postgresql:postgresql* | mariadb:mysql* | mariadb:mariadb*) ;;
            *) usage_error "--db $DB_TYPE does not match the --db-url scheme '$scheme'" ;;
        esac
    fi
    DB_TYPE=${DB_TYPE:-sqlite}
    case $DB_TYPE in
        sqlite | postgresql | mariadb) ;;
        *) usage_error "--db must be sqlite, postgresql or mariadb, got '$DB_TYPE'" ;;
    esac
    if [[ -n $MGMT_IP ]]; then
        [[ $MGMT_IP =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || usage_error "-I must be an IPv4 address, got '$MGMT_IP'"
    fi
    [[ $ROOT == /* ]] || ROOT=$(pwd)/$ROOT
    [[ $BIN_DIR == /* ]] || BIN_DIR=$(pwd)/$BIN_DIR
    [[ $LOG_DIR == /* ]] || LOG_DIR=$(pwd)/$LOG_DIR
    ROOT=${ROOT%/}
    return 0
}

# ---- output and the log -------------------------------------------------------------------------
say() { [[ $QUIET -eq 1 ]] || echo "$@"; }

log() { [[ -z $LOG_FILE ]] || printf '%s %s\n' "$(date '+%F %T')" "$*" >>"$LOG_FILE"; }

open_log() {
    mkdir -p "$LOG_DIR"
    LOG_FILE=$LOG_DIR/install.log
    log "==== install.sh $ORIG_ARGS_TEXT (release $VERSION from $SRC)"
}

step() {  # step NAME: a new named step (closes the previous one)
    end_step
    STEP=$1
    STEP_T0=$SECONDS
    say "==> $STEP"
    log "---- $STEP"
}

end_step() {
    if [[ -n $STEP ]]; then
        say "    done in $((SECONDS - STEP_T0)) s (total $((SECONDS - T0)) s)"
    fi
    STEP=""
}

run() {  # run CMD...: every detail to the log; on failure the log's tail and a non-zero exit
    log "\$ $*"
    if ! "$@" </dev/null >>"$LOG_FILE" 2>&1; then
        step_failed
    fi
}

step_failed() {
    echo "install.sh: step '$STEP' failed after $((SECONDS - STEP_T0)) s; the last lines of $LOG_FILE:" >&2
    tail -n 25 "$LOG_FILE" | sed 's/^/    /' >&2
    echo "install.sh: fix the cause and rerun the same command (finished steps are not redone)" >&2
    log "FAILED: $STEP"
    exit 1
}

# ---- checks (nothing changed yet) ---------------------------------------------------------------
port_taken() {  # something accepts connections on 127.0.0.1:PORT or MGMT_IP:PORT
    local host
    for host in 127.0.0.1 "$MGMT_IP"; do
        (exec 3<>"/dev/tcp/$host/$1") 2>/dev/null && return 0
    done
    return 1
}

own_mn_running() {  # this install root's MN answers (a rerun may find its own ports taken)
    [[ -x $ROOT/venv/bin/zstack-ctl ]] || return 1
    ZSTACK_HOME=$ROOT/mn "$ROOT/venv/bin/zstack-ctl" --home "$ROOT/mn" status >/dev/null 2>&1
}

default_ip() {
    local ip
    ip=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n 1) || true
    echo "${ip:-127.0.0.1}"
}

check_system() {
    [[ $(uname -s) == Linux ]] || fail 1 "the management node runs on Linux (this is $(uname -s))"
    [[ $(id -u) -eq 0 ]] || fail 1 "run me as root (sudo bash install.sh ...): I install Debian packages and \
write $ROOT, $BIN_DIR and $LOG_DIR"
    command -v apt-get >/dev/null && command -v dpkg-query >/dev/null \
        || fail 1 "apt-get not found: this installer supports Debian 12 (bookworm) and its derivatives"
    for tool in tar sha256sum; do
        command -v "$tool" >/dev/null || fail 1 "'$tool' is missing (apt-get install coreutils tar)"
    done
    [[ -n $MGMT_IP ]] || MGMT_IP=$(default_ip)
    if [[ $UPGRADE -eq 1 ]]; then
        [[ -x $ROOT/venv/bin/zstack-ctl ]] || fail 1 "-u upgrades an existing installation, and $ROOT has none \
(install first without -u)"
        return 0
    fi
    if ! own_mn_running; then
        port_taken "$API_PORT" && fail 1 "port $API_PORT is already in use by another process: choose another \
with --port"
        if [[ $MODE == simulator ]] && port_taken "$SIM_PORT"; then
            fail 1 "the simulator port $SIM_PORT is already in use: choose another with --simulator-port"
        fi
    fi
    if [[ $MODE == allinone ]] && [[ ! -e /dev/kvm ]]; then
        echo "install.sh: warning: /dev/kvm is absent: guests on this host will run without KVM \
acceleration (slow TCG)" >&2
    fi
    return 0
}

# ---- the piped form: fetch the release and run its install.sh -----------------------------------
fetch_release() {
    local url=$RELEASE_URL expect="" tmp
    if [[ -z $url ]]; then
        [[ -n $RELEASE_BASE_URL && -n $RELEASE_VERSION ]] || fail 1 "this install.sh does not come with a \
release: give the release tarball with -f URL (or run it from a checkout or an unpacked release)"
        url=$RELEASE_BASE_URL
    fi
    if [[ $url != *.tar.gz ]]; then
        [[ -n $RELEASE_VERSION ]] || fail 1 "-f $url is not a .tar.gz, and this install.sh knows no version"
        url=${url%/}/zstack-$RELEASE_VERSION.tar.gz
    fi
    [[ $url == */zstack-$RELEASE_VERSION.tar.gz ]] && expect=$RELEASE_SHA256
    tmp=$(mktemp -d /tmp/zstack-install.XXXXXX)
    trap 'rm -rf "$tmp"' EXIT
    say "==> fetching $url"
    if [[ $url == http://* || $url == https://* ]]; then
        command -v curl >/dev/null || fail 1 "curl is missing (apt-get install curl)"
        curl -fsSL ${PROXY:+--proxy "$PROXY"} -o "$tmp/release.tar.gz" "$url" \
            || fail 1 "could not download $url"
    else
        [[ -f ${url#file://} ]] || fail 1 "no release tarball at $url"
        cp "${url#file://}" "$tmp/release.tar.gz"
    fi
    if [[ -n $expect ]]; then
        [[ $(sha256sum "$tmp/release.tar.gz" | cut -d' ' -f1) == "$expect" ]] \
            || fail 1 "$url does not match the sha256 this install.sh was published with"
    fi
    tar -xzf "$tmp/release.tar.gz" -C "$tmp" || fail 1 "$url is not a readable tar.gz"
    local dir
    dir=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d -name 'zstack-*' | head -n 1)
    [[ -n $dir && -f $dir/install.sh && -f $dir/VERSION && -d $dir/installer ]] \
        || fail 1 "$url is not a ZStack release (zstack-<version>/install.sh, installer/, VERSION)"
    local version
    version=$(cat "$dir/VERSION")
    [[ $version =~ ^[A-Za-z0-9._+-]+$ ]] || fail 1 "$url has an invalid VERSION '$version'"
    local dest=$ROOT/releases/$version
    mkdir -p "$ROOT/releases"
    if [[ -d $dest ]] && diff -rq "$dir" "$dest" >/dev/null 2>&1; then
        say "    release $version already unpacked in $dest"
    else
        rm -rf "$dest.new"
        mv "$dir" "$dest.new"
        rm -rf "$dest"
        mv "$dest.new" "$dest"
        say "    unpacked into $dest"
    fi
    rm -rf "$tmp"
    trap - EXIT
    export ZSTACK_INSTALL_FETCHED=1
    exec bash "$dest/install.sh" "${ORIG_ARGS[@]}" </dev/null
}

# ---- the steps that change the system -----------------------------------------------------------
pick_python() {
    if [[ -n ${PYTHON:-} ]]; then
        echo "$PYTHON"
    elif [[ -x /usr/bin/python3 ]]; then
        echo /usr/bin/python3
    else
        command -v python3 || echo /usr/bin/python3
    fi
}

debian_packages() {
    # The MN logs in to hosts with ssh (+ sshpass for a password) for AddKVMHost; -a needs sshd here.
    local wanted=(python3 python3-venv ca-certificates tar openssh-client sshpass) missing=() p
    [[ $MODE != allinone ]] || wanted+=(openssh-server)
    for p in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        say "    present: ${wanted[*]}"
        return 0
    fi
    say "    apt-get install ${missing[*]}"
    run env DEBIAN_FRONTEND=noninteractive apt-get update -q
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
}

make_venv() {
    local py
    py=$(pick_python)
    "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
        || fail 1 "$py is $("$py" -V 2>&1 || echo missing): Python 3.11 or newer is needed (Debian 12's python3)"
    if [[ ! -x $ROOT/venv/bin/python ]]; then
        say "    creating $ROOT/venv with $py"
        run mkdir -p "$ROOT"
        run "$py" -m venv "$ROOT/venv"
    fi
    if [[ ! -x $ROOT/venv/bin/ansible-playbook ]]; then
        say "    pip install $ANSIBLE_CORE${CONSTRAINTS:+ (pinned by $CONSTRAINTS)}"
        run "$ROOT/venv/bin/python" -m pip install -q --disable-pip-version-check \
            ${CONSTRAINTS:+--constraint "$CONSTRAINTS"} "$ANSIBLE_CORE"
    else
        say "    present: $("$ROOT/venv/bin/ansible-playbook" --version 2>/dev/null | head -n 1)"
    fi
}

stage_release() {  # REL: this release under ROOT/releases/VERSION (an unpacked release, or built here)
    REL=$ROOT/releases/$VERSION
    if [[ $SRC == "$REL" ]]; then
        say "    running from $REL"
        return 0
    fi
    local tmp=$ROOT/releases/.stage-$VERSION
    run rm -rf "$tmp"
    if [[ $KIND == checkout ]]; then
        say "    building the wheel from the checkout $SRC"
        run "$ROOT/venv/bin/python" "$SRC/tools/build_release.py" --stage "$tmp"
    else
        run mkdir -p "$tmp"
        run cp -a "$SRC/install.sh" "$SRC/installer" "$SRC/wheels" "$SRC/VERSION" "$tmp/"
        [[ ! -f $SRC/constraints.txt ]] || run cp -a "$SRC/constraints.txt" "$tmp/"
    fi
    if [[ -d $REL ]] && diff -rq "$tmp" "$REL" >>"$LOG_FILE" 2>&1; then
        run rm -rf "$tmp"
        say "    release $VERSION already in $REL"
    else
        run rm -rf "$REL"
        run mv "$tmp" "$REL"
        say "    release $VERSION staged in $REL"
    fi
}

write_vars() {  # the playbook's variables, as JSON (passwords inside: mode 0600, removed after)
    VARS_FILE=$(mktemp /tmp/zstack-install-vars.XXXXXX.json)
    trap 'rm -f "$VARS_FILE"' EXIT
    local wheel
    wheel=$(ls "$REL"/wheels/zstack-*.whl 2>/dev/null | head -n 1)
    [[ -n $wheel ]] || fail 1 "no wheel in $REL/wheels"
    local constraints=""
    [[ ! -f $REL/constraints.txt ]] || constraints=$REL/constraints.txt
    ZI_ROOT=$ROOT ZI_WHEEL=$wheel ZI_CONSTRAINTS=$constraints ZI_BIN=$BIN_DIR ZI_LOG=$LOG_DIR ZI_IP=$MGMT_IP \
    ZI_PORT=$API_PORT ZI_SIMPORT=$SIM_PORT ZI_MODE=$MODE ZI_START=$((1 - NO_START)) ZI_DB=$DB_TYPE \
    ZI_DBURL=$DB_URL ZI_DBNAME=$DB_NAME ZI_DBPW=$DB_PASSWORD ZI_DBROOTPW=$DB_ROOT_PASSWORD ZI_DROP=$DROP_DB \
    "$ROOT/venv/bin/python" -I - "$VARS_FILE" <<'EOF'
import json, os, sys
e = os.environ
root = e["ZI_ROOT"]
out = {
    "ansible_python_interpreter": f"{root}/venv/bin/python",
    "mn_root": root, "mn_wheel": e["ZI_WHEEL"], "mn_constraints": e["ZI_CONSTRAINTS"],
    "mn_bin_dir": e["ZI_BIN"], "mn_log_dir": e["ZI_LOG"],
    "mn_management_ip": e["ZI_IP"], "mn_api_port": int(e["ZI_PORT"]),
    "mn_simulator_port": int(e["ZI_SIMPORT"]), "mn_simulator": e["ZI_MODE"] == "simulator",
    "mn_start": e["ZI_START"] == "1", "mn_db_type": e["ZI_DB"], "mn_db_drop": e["ZI_DROP"] == "1",
    "db_home": f"{root}/mn", "db_type": e["ZI_DB"], "db_url": e["ZI_DBURL"], "db_name": e["ZI_DBNAME"],
    "db_password": e["ZI_DBPW"], "db_root_password": e["ZI_DBROOTPW"],
}
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_TRUNC)
with os.fdopen(fd, "w") as f:
    json.dump(out, f)
EOF
}

ansible_progress() {  # reads ansible-playbook's output: everything to the log, one line per task
    local line task="" status="" recap=0
    flush() {
        if [[ -n $task && -n $status && $status != skipping ]]; then
            say "$(printf '    %-66s %-8s %4s s' "${task:0:66}" "$status" "$((SECONDS - T0))")"
        fi
        task=""
        status=""
    }
    while IFS= read -r line; do
        printf '%s\n' "$line" >>"$LOG_FILE"
        case $line in
            "TASK ["* | "RUNNING HANDLER ["*)
                flush
                task=${line#*[}
                task=${task%%]*} ;;
            "PLAY RECAP"*) flush; recap=1 ;;
            changed:*) status=changed ;;
            ok:*) [[ $status == changed ]] || status=ok ;;
            skipping:*) [[ -n $status ]] || status=skipping ;;
            fatal:* | failed:*)
                status=FAILED
                flush
                echo "    ${line:0:400}" >&2 ;;
            *"localhost "*":"*"ok="*)
                [[ $recap -eq 1 ]] && CHANGED=$(sed -n 's/.*changed=\([0-9]*\).*/\1/p' <<<"$line") ;;
        esac
    done
    flush
}

run_playbook() {
    write_vars
    CHANGED=0
    local rc=0
    log "\$ ansible-playbook -i localhost, $REL/installer/site.yml -e @$VARS_FILE"
    # The CHANGED count is read in this shell: the reader is not a subshell (lastpipe).
    shopt -s lastpipe
    set +o pipefail
    env ANSIBLE_CONFIG="$REL/installer/ansible.cfg" ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 \
        ${PROXY:+http_proxy="$PROXY" https_proxy="$PROXY"} \
        "$ROOT/venv/bin/ansible-playbook" -i localhost, -c local "$REL/installer/site.yml" \
        -e "@$VARS_FILE" </dev/null 2>&1 | ansible_progress
    rc=${PIPESTATUS[0]}
    set -o pipefail
    rm -f "$VARS_FILE"
    [[ $rc -eq 0 ]] || step_failed
    if [[ $CHANGED -eq 0 ]]; then
        say "    nothing changed: this machine already had this installation"
    else
        say "    $CHANGED task(s) changed the system"
    fi
}

upgrade() {
    local wheel
    wheel=$(ls "$REL"/wheels/zstack-*.whl 2>/dev/null | head -n 1)
    step "upgrading the management node to $VERSION (zstack-ctl upgrade)"
    log "\$ zstack-ctl upgrade $wheel"
    ZSTACK_HOME=$ROOT/mn "$ROOT/venv/bin/zstack-ctl" --home "$ROOT/mn" upgrade "$wheel" </dev/null \
        2>&1 | tee -a "$LOG_FILE" | { if [[ $QUIET -eq 1 ]]; then cat >/dev/null; else sed 's/^/    /'; fi; }
    [[ ${PIPESTATUS[0]} -eq 0 ]] || step_failed
    # What the mn role would have recorded, so that a later run of this release changes nothing.
    sha256sum "$wheel" | cut -d' ' -f1 >"$ROOT/venv/zstack-wheel.sha256"
    if [[ -L $ROOT/venv/share/zstack/installer ]]; then
        ln -sfn "$REL/installer" "$ROOT/venv/share/zstack/installer"
    fi
    end_step
    echo "ZStack upgraded to $VERSION in $((SECONDS - T0)) s; zstack-ctl status shows it"
}

add_this_host() {  # -a: this machine as a KVM host, through the started MN's API (AddKVMHost)
    if [[ -z $HOST_PASSWORD ]]; then
        say "    skipped: no --host-password; the commands to add it are in the summary below"
        return 0
    fi
    if ! (exec 3<>"/dev/tcp/$MGMT_IP/22") 2>/dev/null; then
        say "    starting sshd (AddKVMHost logs in over SSH)"
        run service ssh start
    fi
    local url=http://$MGMT_IP:$API_PORT out
    log "\$ AddKVMHost managementIp=$MGMT_IP username=$HOST_USER (through $url)"
    if ! out=$(ZI_URL=$url ZI_IP=$MGMT_IP ZI_USER=$HOST_USER ZI_PW=$HOST_PASSWORD \
        "$ROOT/venv/bin/python" -I - 2>&1 <<'EOF'
import os
import sys
from mn.client import ClientError, ZStackClient
e = os.environ
api = ZStackClient(e["ZI_URL"])
try:
    api.login()
    if api.query("QueryHost", f"managementIp={e['ZI_IP']}"):
        print(f"host {e['ZI_IP']} is already added")
        sys.exit(0)
    zones = api.query("QueryZone", "name=zone-1") or [api.call("CreateZone", name="zone-1")["inventory"]]
    clusters = api.query("QueryCluster", "name=cluster-1", f"zoneUuid={zones[0]['uuid']}") or [
        api.call("CreateCluster", name="cluster-1", zoneUuid=zones[0]["uuid"], hypervisorType="KVM")["inventory"]]
    host = api.call("AddKVMHost", name="host-1", managementIp=e["ZI_IP"], username=e["ZI_USER"],
                    password=e["ZI_PW"], clusterUuid=clusters[0]["uuid"])["inventory"]
except ClientError as exc:
    sys.exit(str(exc))
print(f"host {host['name']} ({host['managementIp']}): {host['status']}, in zone-1 / cluster-1")
EOF
    ); then
        printf '%s\n' "$out" >>"$LOG_FILE"
        step_failed
    fi
    printf '%s\n' "$out" >>"$LOG_FILE"
    HOST_ADDED=1
    say "    ${out##*$'\n'}"
}

summary() {
    end_step
    local ctl=$BIN_DIR/zstack-ctl url state
    url=$("$ctl" status 2>/dev/null | sed -n 's/^url: *//p') || true
    url=${url:-http://$MGMT_IP:$API_PORT}
    state=$("$ctl" status 2>/dev/null | sed -n 's/^status: *//p') || true
    echo
    echo "ZStack $VERSION is installed in $ROOT ($((SECONDS - T0)) s)"
    echo "  management node: $url (${state:-Stopped})"
    echo "  account:         admin / password"
    echo "  database:        $DB_TYPE"
    echo "  commands:        $BIN_DIR/zstack-ctl, $BIN_DIR/zstack-cli"
    echo "  logs:            $LOG_FILE, $LOG_DIR/management-server.log"
    echo "Next:"
    if [[ $NO_START -eq 1 ]]; then
        echo "  zstack-ctl start"
    fi
    echo "  zstack-cli LogInByAccount accountName=admin password=password"
    if [[ $MODE == simulator && $NO_START -eq 0 ]]; then
        local create
        create=$("$ROOT/venv/bin/python" -I - "$url" 2>/dev/null <<'EOF'
import sys
from mn.ops import demo
from mn.client import ZStackClient
api = ZStackClient(sys.argv[1])
api.login()
print(demo.next_command(demo.describe(api)))
EOF
        ) || true
        echo "  zstack-cli ${create:-QueryZone}"
    elif [[ $MODE == allinone && ${HOST_ADDED:-0} -eq 1 ]]; then
        echo "  zstack-cli QueryHost fields=name,status,managementIp"
    elif [[ $MODE == allinone ]]; then
        echo "  zstack-cli CreateZone name=zone-1"
        echo "  zstack-cli CreateCluster zoneUuid=<zone uuid> name=cluster-1 hypervisorType=KVM"
        echo "  zstack-cli AddKVMHost clusterUuid=<cluster uuid> name=host-1 managementIp=$MGMT_IP \\"
        echo "      username=root password=<root's password>     (this machine as the KVM host)"
    else
        echo "  zstack-cli QueryManagementNode"
    fi
    echo "  zstack-ctl status"
    log "==== done in $((SECONDS - T0)) s (changed: $CHANGED)"
}

main() {
    ORIG_ARGS=("$@")
    ORIG_ARGS_TEXT="$*"
    parse_args "$@"
    check_flags
    if [[ -n $PROXY ]]; then
        export http_proxy=$PROXY https_proxy=$PROXY HTTP_PROXY=$PROXY HTTPS_PROXY=$PROXY
    fi
    [[ -z ${ZSTACK_INSTALL_FETCHED:-} ]] || RELEASE_URL=""  # run by fetch_release: use this release
    local me=${BASH_SOURCE[0]:-}
    SRC=""
    if [[ -n $me && $me != main && -f $me ]]; then  # piped: bash names the script "main"
        SRC=$(cd "$(dirname "$me")" && pwd)
    fi
    if [[ -n $RELEASE_URL || -z $SRC || ! -f $SRC/installer/site.yml ]]; then
        KIND=remote
        VERSION=$RELEASE_VERSION
    elif [[ -f $SRC/pyproject.toml ]]; then
        KIND=checkout
        VERSION=$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$SRC/mn/__init__.py")
    else
        KIND=release
        VERSION=$(cat "$SRC/VERSION" 2>/dev/null || true)
    fi
    check_system
    if [[ $KIND == remote ]]; then
        fetch_release  # does not return: runs the fetched release's install.sh
    fi
    [[ -n $VERSION ]] || fail 1 "cannot tell the version of $SRC"
    CONSTRAINTS=""
    [[ ! -f $SRC/constraints.txt ]] || CONSTRAINTS=$SRC/constraints.txt
    CHANGED=0
    open_log
    say "ZStack $VERSION installer: install root $ROOT, log $LOG_FILE"
    step "Debian packages"
    debian_packages
    step "virtualenv with ansible-core ($ROOT/venv)"
    make_venv
    step "release $VERSION"
    stage_release
    if [[ $UPGRADE -eq 1 ]]; then
        upgrade
        return 0
    fi
    step "database ($DB_TYPE) and management node (ansible: installer/site.yml)"
    run_playbook
    if [[ $MODE == allinone && $NO_START -eq 0 ]]; then
        step "this machine as a KVM host (AddKVMHost managementIp=$MGMT_IP)"
        add_this_host
    fi
    summary
}

main "$@"
