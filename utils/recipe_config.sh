# Sourced by the stage drivers (local/...) after their option defaults (config=conf/mini.yaml, ...) and the cd
# to the recipe directory: the environment (path.sh), the job runners (cmd.sh), the command-line options
# (utils/parse_options.sh) and the recipe YAML as shell variables <section>_<key> (python -m ser.config; a bad
# config stops the driver here with one line naming the file and the key).
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh
_recipe_cfg=$(python -m ser.config "$config") || exit 1
eval "$_recipe_cfg"
unset _recipe_cfg
