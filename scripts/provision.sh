#!/usr/bin/env bash
# Provision a Debian 12 (bookworm) machine for the IOC backend. Idempotent: every step checks
# before it acts, so a second run takes about a second.
#
#   scripts/provision.sh            system packages + TimescaleDB (root/sudo), then the Python env
#   scripts/provision.sh --system   only the root part (apt packages, TimescaleDB build)
#   scripts/provision.sh --python   only the unprivileged part (uv + `uv sync --frozen`)
#
# Environment: IOC_CACHE_DIR (default ~/.cache/ioc) holds the private apt configuration, the
# TimescaleDB source tree and provision.log. See docs in /work/shared/PLATFORM.md for why.
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${IOC_CACHE_DIR:-${HOME:-/tmp}/.cache/ioc}
LOG=$CACHE/provision.log
PG_MAJOR=15
PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
TS_SO=/usr/lib/postgresql/$PG_MAJOR/lib/timescaledb.so

PACKAGES=(
    ca-certificates curl make python3 python3-venv
    postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR libssl-dev cmake build-essential dpkg-dev
    mosquitto mosquitto-clients
    python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
    gstreamer1.0-plugins-ugly
    chromium fonts-dejavu-core
)

say() { printf '[provision] %s\n' "$*"; }
die() {
    printf '[provision] FAILED: %s\n' "$*" >&2
    exit 1
}
show_log_tail() {
    if [[ -s $LOG ]]; then
        printf '[provision] last lines of %s:\n' "$LOG" >&2
        tail -n 15 "$LOG" | sed 's/^/    /' >&2 || true
    fi
}
trap 'rc=$?; show_log_tail; die "\`$BASH_COMMAND\` exited with $rc (line $LINENO); full output in $LOG"' ERR

# Run a noisy command with its output in the log; on failure say which command and where.
quiet() {
    local rc=0
    "$@" >>"$LOG" 2>&1 || rc=$?
    if ((rc != 0)); then
        show_log_tail
        die "\`$*\` exited with $rc; full output in $LOG"
    fi
}

mkdir -p "$CACHE"
: >"$LOG"

# ---------------------------------------------------------------------------------- system ---

missing_packages() {
    # dpkg-query prints only the packages it knows; anything not "install ok installed" is missing.
    local installed
    installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null \
        | awk '$2 == "install" && $3 == "ok" && $4 == "installed" { print $1 }' || true)
    local p
    for p in "${PACKAGES[@]}"; do
        grep -qxF "$p" <<<"$installed" || printf '%s\n' "$p"
    done
}

system_work_needed() {
    [[ -n $(missing_packages) ]] || [[ ! -e $TS_SO ]]
}

debian_mirror() {
    # The mirror this machine already uses for bookworm (deb822 or one-line format).
    local m=""
    if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
        m=$(awk '
            /^[[:space:]]*$/ { if (uri != "" && suites ~ /(^| )bookworm( |$)/) { print uri; exit } uri = ""; suites = "" }
            tolower($1) == "uris:" { uri = $2 }
            tolower($1) == "suites:" { $1 = ""; suites = $0 " " }
            END { if (uri != "" && suites ~ /(^| )bookworm( |$)/) print uri }
        ' /etc/apt/sources.list.d/debian.sources | head -n 1)
    fi
    if [[ -z $m && -r /etc/apt/sources.list ]]; then
        m=$(awk '$1 == "deb" {
                for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { uri = $i; suite = $(i + 1); break }
                if (suite == "bookworm") { print uri; exit }
            }' /etc/apt/sources.list)
    fi
    printf '%s\n' "${m:-http://deb.debian.org/debian}"
}

install_packages() {
    local missing
    mapfile -t missing < <(missing_packages)
    if ((${#missing[@]} == 0)); then
        say "apt packages: all ${#PACKAGES[@]} present"
        return
    fi
    if ! dpkg-query -W -f='${Status}' postgresql-common 2>/dev/null | grep -q 'ok installed'; then
        # Keep Debian from creating (and starting) its own `main` cluster on :5432; the project
        # runs its own cluster on its own port.
        mkdir -p /etc/postgresql-common/createcluster.d
        printf 'create_main_cluster = false\n' >/etc/postgresql-common/createcluster.d/ioc.conf
    fi
    say "apt packages: installing ${#missing[@]} (${missing[*]}); log: $LOG"
    export DEBIAN_FRONTEND=noninteractive
    quiet apt-get -o DPkg::Lock::Timeout=300 update
    quiet apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${missing[@]}"
    say "apt packages: done"
}

build_timescaledb() {
    if [[ -e $TS_SO ]]; then
        say "timescaledb: present ($TS_SO)"
        return
    fi
    [[ -x $PG_CONFIG ]] || die "$PG_CONFIG missing: postgresql-server-dev-$PG_MAJOR is not installed"
    local mirror apt_dir src_dir dsc
    mirror=$(debian_mirror)
    apt_dir=$CACHE/apt-trixie
    src_dir=$CACHE/timescaledb-src
    say "timescaledb: building the Apache-2 edition from Debian trixie source ($mirror); log: $LOG"
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
    local signed=""
    [[ -r /usr/share/keyrings/debian-archive-keyring.gpg ]] \
        && signed="[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] "
    printf 'deb-src %s%s trixie main\n' "$signed" "$mirror" >"$apt_dir/sources.list"
    # A private apt configuration: never touches /etc/apt or the system's lists and caches.
    local opts=(
        -o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=-"
        -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache"
        -o "APT::Sandbox::User=root"
    )
    quiet apt-get "${opts[@]}" --error-on=any update
    rm -rf "$src_dir" "$CACHE"/timescaledb_*
    cd "$CACHE"
    quiet apt-get "${opts[@]}" source --download-only timescaledb
    dsc=$(ls -1 "$CACHE"/timescaledb_*.dsc 2>/dev/null | tail -n 1)
    [[ -n $dsc ]] || die "timescaledb source package not found in trixie at $mirror"
    quiet dpkg-source -x "$dsc" "$src_dir" # "no acceptable signature" warning is harmless
    cd "$src_dir"
    quiet ./bootstrap -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
        -DSEND_TELEMETRY_DEFAULT=OFF -DUSE_TELEMETRY=OFF -DPG_CONFIG="$PG_CONFIG"
    quiet make -C build -j2 install
    cd "$ROOT"
    [[ -e $TS_SO ]] || die "timescaledb build finished but $TS_SO is missing"
    say "timescaledb: installed $(basename "$dsc" .dsc)"
}

system_steps() {
    [[ $(id -u) -eq 0 ]] || die "the system step needs root"
    install_packages
    build_timescaledb
}

run_system_part() {
    if [[ $(id -u) -eq 0 ]]; then
        system_steps
    elif ! system_work_needed; then
        say "system: apt packages and timescaledb present"
    elif command -v sudo >/dev/null 2>&1; then
        say "system: work remains, running the root part through sudo"
        sudo --preserve-env=SSL_CERT_FILE,IOC_CACHE_DIR,http_proxy,https_proxy,no_proxy \
            bash "$ROOT/scripts/provision.sh" --system
    else
        die "root needed for apt packages/timescaledb: run \`su -c 'bash $ROOT/scripts/provision.sh --system'\` as root, then re-run this script"
    fi
}

# ---------------------------------------------------------------------------------- python ---

python_steps() {
    cd "$ROOT"
    if [[ ! -x .tools/bin/uv ]]; then
        [[ -x /usr/bin/python3 ]] || die "/usr/bin/python3 missing: install python3 and python3-venv"
        say "python: installing uv into .tools/ (log: $LOG)"
        quiet /usr/bin/python3 -m venv .tools
        quiet .tools/bin/pip install --disable-pip-version-check -q uv
    fi
    say "python: uv sync --frozen"
    # The environment is kept as is: uv needs SSL_CERT_FILE to trust this machine's CAs.
    UV_PYTHON_DOWNLOADS=never quiet .tools/bin/uv sync --frozen
    say "python: .venv ready"
}

# promtool checks the Prometheus rules in deploy/prometheus (tests/unit/test_monitoring_files.py).
# Only the binary is wanted, not Debian's prometheus service: the .deb is downloaded and unpacked
# into .tools/bin. Without it that one test skips, so a failed download is a warning.
install_promtool() {
    cd "$ROOT"
    if [[ -x .tools/bin/promtool ]]; then
        say "promtool: present"
        return
    fi
    local tmp
    tmp=$(mktemp -d)
    if (cd "$tmp" && apt-get download prometheus >>"$LOG" 2>&1) \
        && dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x" >>"$LOG" 2>&1 \
        && [[ -x $tmp/x/usr/bin/promtool ]]; then
        mkdir -p .tools/bin
        cp "$tmp/x/usr/bin/promtool" .tools/bin/promtool
        say "promtool: installed into .tools/bin"
    else
        say "promtool: not available (apt-get download prometheus failed; see $LOG): its test will skip"
    fi
    rm -rf "$tmp"
}

# -------------------------------------------------------------------------------------- main ---

case "${1:-all}" in
    all)
        run_system_part
        python_steps
        install_promtool
        ;;
    --system) system_steps ;;
    --python) python_steps ;;
    -h | --help)
        sed -n '2,11p' "$0"
        exit 0
        ;;
    *) die "unknown argument '$1' (use --system, --python or nothing)" ;;
esac
say "done"
