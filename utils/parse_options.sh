# Sourced by scripts after their option defaults (as Kaldi's utils/parse_options.sh):
# turns "--foo-bar value" / "--foo-bar=value" into foo_bar=value for variables the script already
# defines; an undefined option is an error.  Stops at the first non-option argument; the remaining
# arguments are left in "$@".  Deviation: Kaldi's "--config FILE" sources FILE; here --config is an
# ordinary option (in this recipe it always names the recipe YAML, read with python -m ser.config).
while true; do
  [ -z "${1:-}" ] && break
  case "$1" in
    --help|-h)
      if [ -n "${help_message:-}" ]; then printf '%s\n' "$help_message" >&2; else echo "${0}: see the usage at the top of the script" >&2; fi
      exit 0 ;;
    --*=*)
      _name=$(echo "${1%%=*}" | sed 's/^--//; s/-/_/g'); _value=${1#*=}; shift ;;
    --*)
      _name=$(echo "$1" | sed 's/^--//; s/-/_/g')
      if [ $# -lt 2 ]; then echo "$0: option $1 needs a value" >&2; exit 1; fi
      _value=$2; shift 2 ;;
    *) break ;;
  esac
  if [ -z "${!_name+x}" ]; then echo "$0: invalid option --${_name//_/-}" >&2; exit 1; fi
  printf -v "$_name" '%s' "$_value"
done
unset _name _value
true
