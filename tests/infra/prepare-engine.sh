#!/usr/bin/env bash
# Builds (or reuses) the container base image
# localhost/trainforge/python-base:$BASE_IMAGE_VERSION: Debian minbase with
# python3, venv, pip and CA certificates, made by debootstrap because no image
# registry is reachable. Only a fresh machine pays for this.
#
# Output: ${TRAINFORGE_CACHE:-~/.cache/trainforge}/images-v1/python-base-<version>/
#   rootfs.tar.gz  the debootstrapped rootfs (.ok marker once finished)
#   store/         a Podman image store holding the imported image (.store-ok);
#                  each test session mounts it read-only as an additional
#                  image store instead of importing the tarball again (~15 s).
#   build.log
# Needs root, debootstrap and podman. DEBIAN_MIRROR overrides the mirror apt uses.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
out=${TRAINFORGE_CACHE:-$HOME/.cache/trainforge}/images-v1/python-base-$BASE_IMAGE_VERSION
packages=python3,python3-venv,python3-pip,ca-certificates

log() { printf '[prepare-engine %(%H:%M:%S)T] %s\n' -1 "$*"; }

# The mirror apt already uses is the one known to be reachable.
apt_mirror() {
  local uri
  uri=$(sed -n 's/^URIs:[[:space:]]*\(http[^[:space:]]*\/debian\)\/\{0,1\}$/\1/p' \
    /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
  [[ -n $uri ]] || uri=$(sed -n 's/^deb[[:space:]]\{1,\}\(\[[^]]*\][[:space:]]\{1,\}\)\{0,1\}\(http[^[:space:]]*\/debian\)\/\{0,1\}[[:space:]].*/\2/p' \
    /etc/apt/sources.list 2>/dev/null | head -n1)
  echo "${uri:-http://deb.debian.org/debian}"
}

build() {
  local root=$work/rootfs mirror=${DEBIAN_MIRROR:-$(apt_mirror)}
  echo "debootstrap $BASE_IMAGE_SUITE from $mirror with $packages"
  debootstrap --variant=minbase --include="$packages" "$BASE_IMAGE_SUITE" "$root" "$mirror"
  chroot "$root" apt-get clean
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/tmp/* \
    "$root"/var/log/*.log "$root"/var/log/apt/*
  # Debian marks the system Python as externally managed; images built on
  # this base install their own dependencies with pip, as users' images do.
  rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
  tar --numeric-owner --xattrs -C "$root" -czf "$work/rootfs.tar.gz" .
  mv "$work/rootfs.tar.gz" "$out/rootfs.tar.gz"
}

# The image as `podman import` makes it; the fixture does the same when the
# store is missing, so keep the two in step (podman_engine.IMPORT_CHANGES).
import_store() {
  local store=$out/store
  rm -rf "$store"; mkdir -p "$store"
  cat >"$work/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$store"
runroot = "$work/runroot"
CONF
  cat >"$work/containers.conf" <<CONF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$work/events.log"
tmp_dir = "$work/tmp"
CONF
  CONTAINERS_STORAGE_CONF=$work/storage.conf CONTAINERS_CONF=$work/containers.conf \
    podman import \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV LANG=C.UTF-8" --change 'CMD ["python3"]' \
    "$out/rootfs.tar.gz" "localhost/trainforge/python-base:$BASE_IMAGE_VERSION"
}

# step NAME MARKER FUNCTION: run FUNCTION unless MARKER exists, logging to build.log.
step() {
  local name=$1 marker=$2 fn=$3 started=$SECONDS
  if [[ -f $out/$marker ]]; then log "python-base $BASE_IMAGE_VERSION: $name cached ($out)"; return 0; fi
  log "python-base $BASE_IMAGE_VERSION: $name"
  if "$fn" >>"$out/build.log" 2>&1; then
    touch "$out/$marker"
    log "python-base $BASE_IMAGE_VERSION: $name done in $((SECONDS - started))s"
  else
    log "python-base $BASE_IMAGE_VERSION: $name FAILED after $((SECONDS - started))s (log: $out/build.log)"
    tail -n 20 "$out/build.log" | sed 's/^/    /'
    return 1
  fi
}

if [[ ! -f $out/.ok ]]; then
  if [[ $(id -u) != 0 ]]; then log "python-base: debootstrap needs root"; exit 1; fi
  command -v debootstrap >/dev/null || { log "python-base: debootstrap is not installed"; exit 1; }
  rm -rf "$out"
fi
command -v podman >/dev/null || { log "python-base: podman is not installed"; exit 1; }
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
step "rootfs (debootstrap)" .ok build || exit 1
step "image store (podman import)" .store-ok import_store || exit 1
