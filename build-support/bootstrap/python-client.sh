#!/usr/bin/env bash
# Pants' Python client, as the `pants` wrapper's fallback. The native client execs this (it is its
# `_PANTS_SERVER_EXE`, as in scie-pants) when it cannot serve the run through pantsd: no pantsd yet, a
# stale one (other bootstrap options, dead pid), pantsd turned off (`--no-pantsd`, PANTS_PANTSD=false,
# `[GLOBAL] pantsd = false`), `--concurrent`, or PANTS_NO_NATIVE_CLIENT set. The Python client starts
# pantsd when needed. Runs in the native client's process (same pid, same start time).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Pants 2.17's native client also execs its fallback on errors after it handed the run to pantsd: a
# second Ctrl-C ("User interrupt.") or a pantsd that ended mid-run. The Python client would then run
# the whole goal again (a `publish` twice, a `run` restarted after the user asked to stop). Before it
# connects, the native client writes nothing (at the default log level) and takes ~20 ms; a run
# handed to pantsd wrote its request to pantsd's socket. /proc/PID/io counts this process' writes
# across exec: the wrapper passes its count and the time, right before it execs the native client.
read -r started wchar_before <<< "${_CHROMADB_LAMBDA_NATIVE_CLIENT_START:-}" || true
unset _CHROMADB_LAMBDA_NATIVE_CLIENT_START
wchar_now=""
while read -r key value; do
  if [[ "$key" == "wchar:" ]]; then wchar_now="$value"; break; fi
done < "/proc/$$/io" || true
if [[ "$started" =~ ^[0-9]+[.,][0-9]{6}$ && "$wchar_before" =~ ^[0-9]+$ && "$wchar_now" =~ ^[0-9]+$ ]]; then
  now="$EPOCHREALTIME"
  elapsed_us=$((10#${now/[.,]/} - 10#${started/[.,]/}))
  # Both: -ldebug makes the native client write logs before it connects, yet within a second.
  if ((wchar_now > wchar_before && elapsed_us > 1000000)); then
    printf '[pants wrapper] the run through pantsd ended early, after %d.%02d s (interrupted, or pantsd exited during the run); not starting it again with the Python client.\n' \
      "$((elapsed_us / 1000000))" "$((elapsed_us % 1000000 / 10000))" >&2
    exit 75
  fi
fi

if [[ -n "${CHROMADB_LAMBDA_WRAPPER_DEBUG:-}" ]]; then
  printf '[pants wrapper] client: python (%s)\n' "$PANTS_VENV_DIR/bin/pants" >&2
fi
exec "$PANTS_VENV_DIR/bin/pants" "$@"
