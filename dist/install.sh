#!/usr/bin/env bash
# Puts the gantry binary for this runner on PATH: $GANTRY_BIN when it names one, else
# the tool cache, else the release asset for dist/VERSION checked against
# dist/SHA256SUMS; with no published release for this ref, a build from this source.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(tr -d '[:space:]' < "$here/VERSION")"
path_file="${GITHUB_PATH:-/dev/null}"

fail() {
  echo "::error title=gantry install::$1"
  exit 1
}

if [ -n "${GANTRY_BIN:-}" ]; then
  [ -x "$GANTRY_BIN" ] || fail "GANTRY_BIN=$GANTRY_BIN is not an executable file"
  mkdir -p "${RUNNER_TEMP:-/tmp}/gantry-bin"
  ln -sf "$GANTRY_BIN" "${RUNNER_TEMP:-/tmp}/gantry-bin/gantry"
  echo "${RUNNER_TEMP:-/tmp}/gantry-bin" >> "$path_file"
  exit 0
fi

case "${RUNNER_OS:-}/${RUNNER_ARCH:-}" in
  Linux/X64) asset="gantry-x86_64-unknown-linux-musl" ;;
  Linux/ARM64) asset="gantry-aarch64-unknown-linux-musl" ;;
  macOS/ARM64) asset="gantry-aarch64-apple-darwin" ;;
  macOS/X64) asset="gantry-x86_64-apple-darwin" ;;
  *) fail "no gantry release for runner ${RUNNER_OS:-?}/${RUNNER_ARCH:-?} (Linux x64/arm64 and macOS are supported)" ;;
esac

cache="${RUNNER_TOOL_CACHE:-$HOME/.cache}/gantry/$version/${RUNNER_ARCH,,}"
if [ -f "$cache.complete" ] && [ -x "$cache/gantry" ]; then
  echo "gantry $version from the tool cache"
  echo "$cache" >> "$path_file"
  exit 0
fi

expected="$(awk -v a="$asset" '$2 == a || $2 == "*"a { print $1 }' "$here/SHA256SUMS")"
if [ -z "$expected" ]; then
  # A branch or `uses: ./`: no release to download, so build this source.
  echo "no published gantry $version asset $asset; building from source"
  cargo build --release --locked --manifest-path "$here/../Cargo.toml"
  mkdir -p "$cache"
  cp "$here/../target/release/gantry" "$cache/gantry"
else
  base="${GANTRY_RELEASE_URL:-https://github.com/gantry-dev/gantry/releases/download/v$version}"
  tmp="$(mktemp)"
  curl --proto '=https,file' --tlsv1.2 --retry 3 -fsSL "$base/$asset" -o "$tmp" \
    || fail "could not download $base/$asset"
  actual="$(sha256sum "$tmp" | cut -d' ' -f1)"
  if [ "$actual" != "$expected" ]; then
    rm -f "$tmp"
    fail "checksum mismatch for $asset: expected $expected from dist/SHA256SUMS, got $actual; refusing to run it"
  fi
  mkdir -p "$cache"
  install -m 0755 "$tmp" "$cache/gantry"
  rm -f "$tmp"
fi
touch "$cache.complete"
echo "$cache" >> "$path_file"
