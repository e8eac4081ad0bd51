#!/usr/bin/env bash
# `make run`: install what is missing, build the release app, serve it on
# http://127.0.0.1:3000 in demo mode (simulated gateways), with the embedded
# PostgreSQL in ./data.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"

scripts/bootstrap.sh
# --precompress: brotli and gzip twins of the site files, served as they are.
cargo leptos build --release --split --precompress
exec target/release/factory-monitor serve --demo "$@"
