#!/usr/bin/env bash
# Installs whatever the build, the server and the tests need and is missing.
# Idempotent and quiet when everything is present: `make run` and `make test`
# both call it first. Everything comes from the registries (the crate registry, npm,
# Debian); nothing is downloaded from anywhere else.
set -euo pipefail

CARGO_LEPTOS_VERSION=0.3.11
# Must equal the `wasm-bindgen` crate pinned in app/Cargo.toml (and so Cargo.lock).
WASM_BINDGEN_VERSION=0.2.130
BINARYEN_VERSION=132.0.0
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

repo=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$HOME/.cargo/bin:$PATH"
step() { echo "bootstrap: $*" >&2; }

is_root() { [ "$(id -u)" = 0 ]; }

# A first build (debug server, wasm and tests) peaks at about 3 GB in target/,
# measured on a clean clone; say so up front instead of failing minutes later
# with "No space left on device".
if [ ! -d "$repo/target/debug" ]; then
  free_gb=$(df -Pk "$repo" | awk 'NR == 2 { print int($4 / 1048576) }')
  if [ "$free_gb" -lt 4 ]; then
    echo "bootstrap: only ${free_gb} GB free on $repo's disk; a first build needs about 4 GB" >&2
    exit 1
  fi
fi

apt_updated=0
apt_install() {
  if ! is_root; then
    echo "bootstrap: missing Debian package(s) $*; run as root or: sudo apt-get install -y $*" >&2
    exit 1
  fi
  if [ $apt_updated = 0 ]; then
    step "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  step "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Builds a crate from its registry source with one dependency pinned lower,
# because the newest lock files need versions the registry or rustc lacks
# (see docs/toolchain notes in README "Troubleshooting").
install_from_source() {
  local crate=$1 version=$2 pin_pkg=$3 pin_version=$4 features=$5
  local src tmp
  src=$(ls -d "$HOME"/.cargo/registry/src/*/"$crate-$version" 2>/dev/null | head -n1 || true)
  if [ -z "$src" ]; then
    # A failed --locked install still unpacks the source into the registry cache.
    cargo install "$crate" --version "$version" --locked --no-track >/dev/null 2>&1 || true
    src=$(ls -d "$HOME"/.cargo/registry/src/*/"$crate-$version" 2>/dev/null | head -n1 || true)
  fi
  if [ -z "$src" ]; then
    cargo fetch >/dev/null 2>&1 || true
    echo "bootstrap: could not obtain the source of $crate $version from the registry" >&2
    exit 1
  fi
  tmp=$(mktemp -d)
  cp -r "$src" "$tmp/$crate"
  (
    cd "$tmp/$crate"
    rm -f rust-toolchain.toml rust-toolchain
    cargo update -q -p "$pin_pkg" --precise "$pin_version"
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 CARGO_PROFILE_RELEASE_DEBUG=0 \
      CARGO_TARGET_DIR="$tmp/target" cargo install -q --path . --locked $features
  )
  rm -rf "$tmp"
}

# 1. Rust: wasm target, cargo-leptos, wasm-bindgen-cli.
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  step "rustup target add wasm32-unknown-unknown"
  rustup target add wasm32-unknown-unknown >/dev/null
fi
if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
  step "building cargo-leptos $CARGO_LEPTOS_VERSION from source (about 20 minutes on 2 cores)"
  install_from_source cargo-leptos "$CARGO_LEPTOS_VERSION" cargo-util-schemas 0.14.1 "--features no_downloads"
fi
if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
  step "building wasm-bindgen-cli $WASM_BINDGEN_VERSION from source (about 8 minutes)"
  install_from_source wasm-bindgen-cli "$WASM_BINDGEN_VERSION" webpki-roots 1.0.10 ""
fi

# 2. wasm-opt for release builds: npm binaryen (Debian's 108 breaks hydration).
if [ ! -x "$repo/tools/node_modules/.bin/wasm-opt" ]; then
  step "npm install binaryen@$BINARYEN_VERSION into tools/"
  (cd "$repo/tools" && npm ci --silent --no-audit --no-fund >/dev/null)
fi

# 3. PostgreSQL server binaries for the embedded database.
if [ ! -x "$PG_BIN/postgres" ] || [ ! -x "$PG_BIN/initdb" ]; then
  apt_install postgresql
fi

# 4. End-to-end: Chromium and the Playwright packages.
if ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium
fi
if [ ! -d "$repo/end2end/node_modules/@playwright/test" ] || \
   [ "$repo/end2end/package-lock.json" -nt "$repo/end2end/node_modules/.package-lock.json" ]; then
  step "npm ci in end2end/"
  (cd "$repo/end2end" && npm ci --silent --no-audit --no-fund >/dev/null)
fi

# 5. schemathesis (API property tests) in a project-local virtualenv, pinned in its script.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  apt_install python3-venv
fi
"$repo/scripts/schemathesis.sh" --install
