#!/usr/bin/env bash
# Rebuilds the BPF objects, bpf/accesslog.bpf.o, bpf/conntrack.bpf.o and
# bpf/preemption.bpf.o, from bpf/*.c and bpf/*.h.
# The objects are committed, so building the agent needs no clang; this script
# is for changing the kernel side. It is reproducible: the same sources and the
# same compiler (Debian 12's clang 14) give the same bytes, wherever the clone
# lives, which is what test/kernel/bpf-object.test.ts checks.
#   scripts/build-bpf.sh [DIR]   (default bpf/)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bpf}
clang=${CLANG:-clang-14}
command -v "$clang" >/dev/null || clang=clang
strip=${LLVM_STRIP:-llvm-strip-14}
command -v "$strip" >/dev/null || strip=llvm-strip
arch_include=/usr/include/$(uname -m)-linux-gnu
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
for name in accesslog conntrack preemption; do
  "$clang" -g -O2 -target bpf -D__TARGET_ARCH_x86 \
    -I"$arch_include" -Ibpf \
    -fdebug-prefix-map="$PWD"=. -fno-ident \
    -Wall -Werror \
    -c "bpf/$name.bpf.c" -o "$tmp"
  # DWARF is not needed at run time (CO-RE uses .BTF/.BTF.ext); it also carries
  # build paths, so drop it.
  "$strip" -g "$tmp"
  cp "$tmp" "$out/$name.bpf.o"
done
