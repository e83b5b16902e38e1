#!/usr/bin/env bash
# rust-toolchain.toml pins 1.95.0. This kind of machine ships that release as rustup's
# `stable` and can download no other, so on a machine where no toolchain answers to the name
# 1.95.0 yet, this names the installed stable so (only when it is that release): rustup then
# finds the pinned toolchain locally instead of trying to download it. Run once on a fresh
# machine before any cargo command; `.ci/run` does. Does nothing when the name exists.
set -euo pipefail
cd "$(dirname "$0")/.."

pinned=$(sed -n 's/^channel = "\(.*\)"$/\1/p' rust-toolchain.toml)
host=$(rustc +stable -vV | sed -n 's/^host: //p')
toolchains="${RUSTUP_HOME:-$HOME/.rustup}/toolchains"
if [[ -e "$toolchains/$pinned-$host" ]]; then
    exit 0
fi
if ! rustc +stable --version | grep -q "^rustc $pinned "; then
    echo "rust-toolchain.toml pins $pinned, but stable is $(rustc +stable --version)" >&2
    exit 1
fi
echo "naming the installed stable toolchain $pinned"
ln -s "$toolchains/stable-$host" "$toolchains/$pinned-$host"
