#!/usr/bin/env bash
# The whole example on a synthetic MNLI-layout corpus, on any machine, with nothing to download:
# train two small teachers (one config, two seeds) with run_mnli_train.sh, then
# compare_recipes.sh trains the student alone and distills it (recommended recipe, BERT-EMD,
# multi-teacher) with the repository's scripts, and prints the results table.
#
#   bash demo/run_demo.sh            # DEMO_DIR defaults to ./demo_output
#
# The teachers learn from all n_train pairs, the students from the first student_n_train only:
# the pairs only the teachers see stand in for the pre-training that makes a real teacher know
# more than its student's training set can teach.
#
# Every variable below can be set from the environment. The scripts take the real recipe's
# defaults; the demo shortens them (epochs, length) to finish in minutes on two CPU cores.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

: "${DEMO_DIR:=demo_output}"
: "${n_train:=30000}"        # train.tsv, all of it for the teachers
: "${student_n_train:=10000}"  # its first pairs, for the students
: "${n_dev:=2000}"
: "${length:=40}"            # the longest generated pair has 37 tokens
: "${batch_size:=32}"
: "${teacher_ep:=2}"
: "${teacher_lr:=5e-4}"
: "${student_ep:=2}"
: "${student_lr:=5e-4}"      # the student alone's; the recommended recipe's is 5e-4 too
: "${runs:=alone recommended emd multiteacher}"  # rows (see compare_recipes.sh; add published)
: "${parallel:=2}"           # runs at the same time, each with its share of the cores
                             # (or with OMP_NUM_THREADS threads, when it is set)
: "${PYTHON:=python}"

export DEMO_DIR=$(mkdir -p "$DEMO_DIR" && cd "$DEMO_DIR" && pwd)
export DATA_ROOT_DIR=$DEMO_DIR OUTPUT_ROOT_DIR=$DEMO_DIR/runs length batch_size PYTHON
[[ "$parallel" =~ ^[1-9][0-9]*$ ]] || { echo "parallel must be a whole number >= 1, got '$parallel'" >&2; exit 1; }
(( student_n_train <= n_train )) || { echo "student_n_train ($student_n_train) must not exceed n_train ($n_train)" >&2; exit 1; }
cores=$(nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
threads=${OMP_NUM_THREADS:-$(( cores / parallel > 0 ? cores / parallel : 1 ))}

final_checkpoint() {  # the checkpoint of the last step of a run
    ls "$1"/gs*.pkl | sort -V | tail -n 1
}

train_teacher() {  # train_teacher NAME JSON SEED: one teacher with run_mnli_train.sh, timed
    local start=$SECONDS
    env OUTPUT_DIR="$OUTPUT_ROOT_DIR/$1" model_config_json_file="$2" torch_seed="$3" \
        ep="$teacher_ep" lr="$teacher_lr" OMP_NUM_THREADS="$threads" \
        bash "$here/run_mnli_train.sh" --PRINT_EVERY 100 \
        > "$OUTPUT_ROOT_DIR/$1.log" 2>&1 || { echo "=== $1 failed:"; tail -n 20 "$OUTPUT_ROOT_DIR/$1.log"; return 1; }
    echo $((SECONDS - start)) > "$OUTPUT_ROOT_DIR/$1/seconds.txt"
    echo "=== $1: $(grep "Acc:" "$OUTPUT_ROOT_DIR/$1/eval_results.txt" | tail -n 1)"
}

"$PYTHON" "$here/demo/make_demo_data.py" --output_dir "$DEMO_DIR" --n_train "$n_train" --n_dev "$n_dev"
mkdir -p "$OUTPUT_ROOT_DIR"
echo "=== the teachers: run_mnli_train.sh (demo_teacher.json, seeds 9580 and 1234)"
if (( parallel > 1 )); then
    stop_tree() {  # a process and everything it started (a teacher is bash -> bash -> python)
        for child in $(pgrep -P "$1"); do stop_tree "$child"; done
        kill "$1" 2>/dev/null || true
    }
    trap 'for job in $(jobs -p); do stop_tree "$job"; done' EXIT  # on a TERM or a failure
    trap 'exit 143' TERM
    train_teacher teacher demo_teacher.json 9580 & first=$!
    train_teacher teacher2 demo_teacher.json 1234 & second=$!
    failed=0
    wait $first || failed=1
    wait $second || failed=1
    (( failed == 0 )) || exit 1
    trap - EXIT TERM
else
    train_teacher teacher demo_teacher.json 9580
    train_teacher teacher2 demo_teacher.json 1234
fi

# The students: alone, distilled with each recipe, EMD and multi-teacher, and the table.
TEACHER_CKPT=$(final_checkpoint "$OUTPUT_ROOT_DIR/teacher") \
TEACHER_CKPT_2=$(final_checkpoint "$OUTPUT_ROOT_DIR/teacher2") \
n_train=$student_n_train ep=$student_ep lr=$student_lr runs=$runs parallel=$parallel \
matches="$here/jsons/matches_L4_from_4_layers.json" alone_json=demo_student_alone.json \
tiny_json=demo_distill_tiny.json multi_json=demo_distill_multi.json \
    bash "$here/compare_recipes.sh"
