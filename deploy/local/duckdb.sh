#!/usr/bin/env bash
# The prebuilt DuckDB C library the embedded store links against (lib/store, adr/0009), so that
# no build compiles DuckDB's C++ (the duckdb crate's `bundled` feature: ~28 min on 2 cores).
#
#   deploy/local/duckdb.sh        install into .local/duckdb/lib unless already there; print the dir
#
# Source: the npm package @duckdb/node-bindings-linux-x64 (DuckDB's own Node.js bindings), which
# ships libduckdb.so with the full C API; fetched with `npm pack` (or, without npm, the same
# tarball from the registry with curl), the library checked against the sha256 below. .cargo/config.toml points DUCKDB_LIB_DIR here; the build records this directory as the
# binaries' run path (lib/store/build.rs). The version must match the `duckdb` crate's
# (Cargo.toml: duckdb 1.10506.x = DuckDB 1.5.6). Idempotent: a library with the right checksum
# is left alone.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
DUCKDB_VERSION=1.5.6
NPM_PACKAGE=@duckdb/node-bindings-linux-x64@1.5.6-r.1
NPM_TARBALL=https://registry.npmjs.org/@duckdb/node-bindings-linux-x64/-/node-bindings-linux-x64-1.5.6-r.1.tgz
SO_SHA256=3f4962cdd266eab2b479a5b5a4a6d063d279b2954ae814ed00385d553b747633
LIB_DIR=${DUCKDB_LIB_DIR:-$repo/.local/duckdb/lib}

log() { printf '[duckdb] %s\n' "$*" >&2; }

installed() {
  [ -f "$LIB_DIR/libduckdb.so" ] &&
    [ "$(sha256sum "$LIB_DIR/libduckdb.so" | cut -d' ' -f1)" = "$SO_SHA256" ]
}

if ! installed; then
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) ;;
    *) log "no prebuilt libduckdb for $(uname -s)-$(uname -m) here: set DUCKDB_LIB_DIR to a DuckDB $DUCKDB_VERSION library"; exit 1 ;;
  esac
  log "installing libduckdb $DUCKDB_VERSION from npm $NPM_PACKAGE into $LIB_DIR"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  if command -v npm >/dev/null; then
    (cd "$tmp" && npm pack --silent "$NPM_PACKAGE" >/dev/null)
  else
    curl -fsSL --retry 3 -o "$tmp/package.tgz" "$NPM_TARBALL"
  fi
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/libduckdb.so
  got=$(sha256sum "$tmp/package/libduckdb.so" | cut -d' ' -f1)
  if [ "$got" != "$SO_SHA256" ]; then
    log "checksum mismatch for libduckdb.so: got $got, want $SO_SHA256"; exit 1
  fi
  mkdir -p "$LIB_DIR"
  # Rename into place: a build running meanwhile never sees half a library.
  cp "$tmp/package/libduckdb.so" "$LIB_DIR/.libduckdb.so.tmp"
  mv -f "$LIB_DIR/.libduckdb.so.tmp" "$LIB_DIR/libduckdb.so"
fi
echo "$LIB_DIR"
