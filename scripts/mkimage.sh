#!/usr/bin/env bash
# Builds a local Docker image from a built muster binary, with no registry and no base image:
# a tar of the binary (as /usr/local/bin/muster), the shared libraries `ldd` lists for it and
# the dynamic loader, fed to `docker import`. Prints the image tag on stdout.
#
#   scripts/mkimage.sh [BINARY] [TAG]      (or MUSTER_BIN=... MUSTER_IMAGE=... scripts/mkimage.sh)
#
# BINARY defaults to $MUSTER_BIN, TAG to $MUSTER_IMAGE or muster:dev. Idempotent: the image is
# labelled with the tar's sha256 and is imported again only when that changed. Debug info is
# stripped from the copy in the image when `strip` is there (MUSTER_STRIP=0 keeps it).
set -euo pipefail

die() { echo "mkimage: $*" >&2; exit 1; }

bin="${1:-${MUSTER_BIN:-}}"
tag="${2:-${MUSTER_IMAGE:-muster:dev}}"
[[ -n "$bin" ]] || die "usage: $0 BINARY [TAG] (or set MUSTER_BIN)"
[[ -f "$bin" && -x "$bin" ]] || die "$bin is not an executable file; build it first (cargo build)"
command -v docker >/dev/null || die "the docker CLI is not installed"
command -v ldd >/dev/null || die "ldd is not installed (Debian package libc-bin)"

work="$(mktemp -d "${TMPDIR:-/tmp}/muster-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$root/data"
chmod 1777 "$root/tmp"
cp "$bin" "$root/usr/local/bin/muster"
if [[ "${MUSTER_STRIP:-1}" != 0 ]] && command -v strip >/dev/null; then
    strip --strip-debug "$root/usr/local/bin/muster"
fi
chmod 0755 "$root/usr/local/bin/muster"

# Every absolute path ldd prints: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and
# the loader `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vDSO has no file and is skipped.
libs="$(ldd "$bin" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' | sort -u)"
[[ -n "$libs" ]] || die "ldd lists no libraries for $bin (a static binary needs none; this script expects a dynamic one)"
for lib in $libs; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done

# Name resolution: files first, then DNS (Docker provides /etc/hosts and /etc/resolv.conf).
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
printf 'root:x:0:0:root:/data:/usr/local/bin/muster\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"

# A reproducible tar: sorted names, fixed times and owners, so the same inputs hash the same.
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$work/image.tar" .
digest="$(sha256sum "$work/image.tar" | cut -d' ' -f1)"

current="$(docker image inspect --format '{{ index .Config.Labels "muster.image-sha256" }}' "$tag" 2>/dev/null || true)"
if [[ "$current" != "$digest" ]]; then
    previous="$(docker image inspect --format '{{ .Id }}' "$tag" 2>/dev/null || true)"
    docker import \
        --change 'ENTRYPOINT ["/usr/local/bin/muster"]' \
        --change 'CMD ["agent"]' \
        --change 'WORKDIR /data' \
        --change 'ENV PATH=/usr/local/bin' \
        --change "LABEL muster.image-sha256=$digest" \
        --message "muster from $(basename "$bin")" \
        "$work/image.tar" "$tag" >/dev/null
    # The image this tag pointed at is now untagged: drop it unless a container still uses it.
    if [[ -n "$previous" ]]; then
        docker image rm "$previous" >/dev/null 2>&1 || true
    fi
fi
echo "$tag"
