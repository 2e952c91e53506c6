# Sourced by run.sh and every steps/ local/ script (as Kaldi's path.sh).
_ser_root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PATH="$_ser_root/.venv/bin:$_ser_root/utils:$PATH"
export PYTHONPATH="$_ser_root${PYTHONPATH:+:$PYTHONPATH}"
export LC_ALL=C
export PYTHONUNBUFFERED=1
unset _ser_root
