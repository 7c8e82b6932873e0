#!/usr/bin/env bash
# Remembers the Docker engine and the upstream image that the `pants` wrapper found, so that a warm
# `./pants` asks the engine nothing (see docs/wrapper.md).
#
#   engine-state.sh refresh FILE   find (or start) the engine and ensure the upstream image, as
#                                  `docker-engine.sh env` and `upstream-image.sh ensure` do, then write
#                                  FILE: the wrapper's exports, and what `engine_state_fresh`
#                                  (common.sh) checks to tell that nothing changed since
set -euo pipefail
buildroot="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
source "$buildroot/build-support/bootstrap/common.sh"

[[ "${1:-}" == "refresh" && -n "${2:-}" ]] || die "usage: $0 refresh FILE"
file="$2"
mkdir -p "$(dirname "$file")"
asked_host="${DOCKER_HOST:-}"
# The file gets the time the checks started, not the time it is written: whatever changes during the
# checks (an engine started, an image built) is newer than the file and makes the next call check again.
stamp="$(mktemp "$file.XXXXXX")"
trap 'rm -f "$stamp" "$stamp.new"' EXIT

# Fails (naming DOCKER_HOST) when the engine asked for does not answer: before Pants starts.
engine_env="$("$buildroot/build-support/bootstrap/docker-engine.sh" env)"
eval "$engine_env"
"$buildroot/build-support/bootstrap/upstream-image.sh" ensure
cli="$("$buildroot/build-support/bootstrap/docker-engine.sh" cli)"

host="${DOCKER_HOST:-unix:///var/run/docker.sock}"
socket=""
[[ "$host" == unix://* ]] && socket="${host#unix://}"

# The upstream image is remembered by its config file and its entry in the engine's tag store, when
# this user can read the engine's data root.
tags_file="" tag_entry="" image_file="" image_unchecked=""
image="$("$buildroot/build-support/bootstrap/upstream-image.sh" name)"
if [[ "$image" == local/* ]]; then
  if [[ -n "$socket" ]] \
    && info="$(DOCKER_HOST="$host" "$cli" info --format '{{.DockerRootDir}} {{.Driver}}' 2>/dev/null)" \
    && id="$(DOCKER_HOST="$host" "$cli" image inspect --format '{{.Id}}' "$image" 2>/dev/null)"; then
    tags_file="${info% *}/image/${info##* }/repositories.json"
    image_file="${info% *}/image/${info##* }/imagedb/content/sha256/${id#sha256:}"
    tag_entry="\"$image\":\"$id\""
  fi
  if [[ ! -r "$tags_file" || ! -f "$image_file" ]] || ! grep -qF -- "$tag_entry" "$tags_file"; then
    tags_file="" tag_entry="" image_file="" image_unchecked=1
  fi
fi

{
  echo "# Written by build-support/bootstrap/engine-state.sh for the ./pants wrapper (see docs/wrapper.md)."
  echo "state_version=1"
  printf 'state_docker_host=%q\n' "$asked_host"
  printf 'state_socket=%q\n' "$socket"
  printf 'state_cli=%q\n' "$cli"
  printf 'state_tags_file=%q\n' "$tags_file"
  printf 'state_tag_entry=%q\n' "$tag_entry"
  printf 'state_image_file=%q\n' "$image_file"
  printf 'state_image_unchecked=%q\n' "$image_unchecked"
  echo "engine_state_exports() {"
  [[ -z "$engine_env" ]] || printf '%s\n' "$engine_env" | sed 's/^/  /'
  echo "  :"
  echo "}"
} > "$stamp.new"
touch -r "$stamp" "$stamp.new"
mv "$stamp.new" "$file"
