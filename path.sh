# Sourced by run.sh and every steps/ local/ script (as Kaldi's path.sh).
_ser_root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PATH="$_ser_root/.venv/bin:$_ser_root/utils:$PATH"
export PYTHONPATH="$_ser_root${PYTHONPATH:+:$PYTHONPATH}"
export LC_ALL=C
export PYTHONUNBUFFERED=1
unset _ser_root
# Fault injection for the interruption tests (as ser/io/faults.py): SER_KILL_AT=<pattern> kills the
# script at the first ser_kill_point whose label matches the glob pattern.  A no-op when unset.
ser_kill_point() { if [ -n "${SER_KILL_AT:-}" ] && [[ "$1" == ${SER_KILL_AT%@*} ]]; then kill -9 $$; fi; }
