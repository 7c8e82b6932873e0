#!/usr/bin/env bash
# Makes sure the engine holds the upstream Python image named by `LAMBDA_PYTHON_IMAGE` in pants.toml.
#
# A `local/...` name is built here, offline, from Debian packages (mmdebstrap + `docker import`): the
# engine can pull nothing. Any other name (e.g. public.ecr.aws/lambda/python:3.12) is left to Docker.
#
#   upstream-image.sh ensure    build it if the engine lacks it (fast when it has it)
#   upstream-image.sh name      print the image's name (empty when pants.toml names none)
set -euo pipefail
buildroot="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$buildroot/build-support/bootstrap/common.sh"

image="$(sed -e '/^[[:space:]]*#/d' -n -e 's/.*"LAMBDA_PYTHON_IMAGE=\([^"]*\)".*/\1/p' "$buildroot/pants.toml" | head -n1)"
if [[ "${1:-}" == "name" ]]; then
  printf '%s\n' "$image"
  exit 0
fi
[[ -n "$image" ]] || exit 0
[[ "$image" == local/* ]] || exit 0

docker_cli() {
  local dir
  dir="$(printf '%s' "${PANTS_DOCKER_EXECUTABLE_SEARCH_PATHS:-}" | sed -n 's/^\["\(.*\)"\]$/\1/p')"
  if [[ -n "$dir" && -x "$dir/docker" ]]; then "$dir/docker" "$@"; else docker "$@"; fi
}

[[ "${1:-}" == "ensure" ]] || die "usage: $0 ensure"
docker_cli image inspect "$image" >/dev/null 2>&1 && exit 0

command -v mmdebstrap >/dev/null 2>&1 || apt_install mmdebstrap
log "building the upstream image $image from Debian bookworm packages (once, ~1 min)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# A fixed SOURCE_DATE_EPOCH keeps file times (and so the image) stable for the same package set.
SOURCE_DATE_EPOCH=1700000000 mmdebstrap --quiet --variant=apt --include=python3,ca-certificates \
  --format=tar bookworm "$tmp/rootfs.tar" || die "mmdebstrap failed to build the upstream rootfs."
docker_cli import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["python3"]' \
  "$tmp/rootfs.tar" "$image" >/dev/null || die "docker import of $image failed."
log "upstream image $image is ready"
