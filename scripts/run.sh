#!/usr/bin/env bash
# `make run`: install what is missing, build the release app, serve it on
# http://127.0.0.1:3000 in demo mode (simulated gateways), with the embedded
# PostgreSQL in ./data.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"

scripts/bootstrap.sh
# --precompress: brotli and gzip twins of the site files, served as they are.
# cargo-leptos re-runs wasm-bindgen and wasm-opt on every build (about 35 s) even when
# nothing changed: skip the build while no source is newer than the last one's stamp.
stamp=target/site/.release-build
inputs=(Cargo.toml Cargo.lock app src crates style migrations)
if [ -f "$stamp" ] && [ -x target/release/factory-monitor ] &&
  [ -z "$(find "${inputs[@]}" -newer "$stamp" -type f -print -quit 2>/dev/null)" ]; then
  echo "The release build is up to date (no source changed since it was made)."
else
  # Stamped with the time the build began: a file saved during the build is newer.
  mkdir -p target/site
  started=$(mktemp target/.release-build.XXXXXX)
  cargo leptos build --release --split --precompress
  mv "$started" "$stamp"
fi
exec target/release/factory-monitor serve --demo "$@"
