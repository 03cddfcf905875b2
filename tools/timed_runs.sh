# Run the repository's scripts a few at a time, each into its own folder with its log and its
# wall time. Sourced by tools/compare_recipes.sh and demo/run_demo.sh, which set before sourcing:
#   here            the repository's root
#   OUTPUT_ROOT_DIR the runs go to $OUTPUT_ROOT_DIR/NAME, their logs to $OUTPUT_ROOT_DIR/NAME.log
#   parallel        how many run at the same time, each with its share of the cores (or with
#                   OMP_NUM_THREADS threads, when it is set)
# and may set extra_main_args: options for main.py in every run (e.g. "--allow_weak_teacher").

[[ "$parallel" =~ ^[1-9][0-9]*$ ]] || { echo "parallel must be a whole number >= 1, got '$parallel'" >&2; exit 1; }
cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
threads_per_run=${OMP_NUM_THREADS:-$(( cores / parallel > 0 ? cores / parallel : 1 ))}
started_runs=()

# timed_run NAME SCRIPT [VAR=VALUE ...] [-- MAIN_ARG ...]: SCRIPT with the VARs set (and the
# MAIN_ARGs after its own arguments to main.py), into $OUTPUT_ROOT_DIR/NAME
timed_run() {
    local name=$1 script=$2 vars=() main_args=()
    shift 2
    while (( $# )) && [[ $1 != -- ]]; do vars+=("$1"); shift; done
    (( $# )) && shift && main_args=("$@")
    local start=$SECONDS
    rm -f "$OUTPUT_ROOT_DIR/$name/seconds.txt"  # written last: the run's mark of success
    # $extra_main_args is split into words on purpose: one word per option.
    # shellcheck disable=SC2086
    env ${vars[@]+"${vars[@]}"} OUTPUT_DIR="$OUTPUT_ROOT_DIR/$name" bash "$here/$script" --PRINT_EVERY 100 \
        ${extra_main_args:-} ${main_args[@]+"${main_args[@]}"} \
        > "$OUTPUT_ROOT_DIR/$name.log" 2>&1 || { echo "=== $name failed:"; tail -n 20 "$OUTPUT_ROOT_DIR/$name.log"; return 1; }
    echo $((SECONDS - start)) > "$OUTPUT_ROOT_DIR/$name/seconds.txt"
    echo "=== $name: $(grep "Acc:" "$OUTPUT_ROOT_DIR/$name/eval_results.txt" | tail -n 1)"
}

start_run() {  # start_run NAME SCRIPT [VAR=VALUE ...] [-- MAIN_ARG ...]: timed_run, once fewer than $parallel run
    while (( $(jobs -rp | wc -l) >= parallel )); do sleep 1; done  # (bash 3.2 has no wait -n)
    started_runs+=("$1")
    echo "=== $1: ${*:2}"
    # In the background even one at a time, so that a TERM stops the run at once (see the traps).
    OMP_NUM_THREADS=$threads_per_run timed_run "$@" &
    (( parallel > 1 )) || wait $! || exit 1
}

wait_for_runs() {  # until every started run has ended; an error if one failed
    local name
    wait
    for name in ${started_runs[@]+"${started_runs[@]}"}; do
        [[ -f "$OUTPUT_ROOT_DIR/$name/seconds.txt" ]] || { echo "row '$name' failed: see $OUTPUT_ROOT_DIR/$name.log" >&2; exit 1; }
    done
}

stop_tree() {  # stop_tree PID: a process and everything it started (a run is bash -> bash -> python)
    local child
    for child in $(pgrep -P "$1"); do stop_tree "$child"; done
    kill "$1" 2>/dev/null || true
}
trap 'for job in $(jobs -p); do stop_tree "$job"; done' EXIT  # no run outlives its caller
trap 'exit 143' TERM
