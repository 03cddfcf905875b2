#!/usr/bin/env bash
# The whole example on a synthetic MNLI-layout corpus, on any machine, with nothing to download:
# train two small teachers with run_mnli_train.sh, then compare_recipes.sh trains the student
# alone and distills it (published and recommended recipes, BERT-EMD, multi-teacher) with the
# repository's scripts, and prints the results table.
#
#   bash demo/run_demo.sh            # DEMO_DIR defaults to ./demo_output
#
# Every variable below can be set from the environment. The scripts take the real recipe's
# defaults; the demo shortens them (epochs, length) to finish in minutes on two CPU cores.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

: "${DEMO_DIR:=demo_output}"
: "${n_train:=20000}"
: "${n_dev:=2000}"
: "${length:=40}"          # the longest generated pair has 37 tokens
: "${batch_size:=32}"
: "${teacher_ep:=2}"
: "${teacher_lr:=2e-4}"
: "${student_ep:=2}"
: "${student_lr:=5e-4}"      # the student alone's; the recommended recipe's is 5e-4 too
: "${runs:=alone recommended emd multiteacher}"  # rows (see compare_recipes.sh; add published)
: "${PYTHON:=python}"

export DEMO_DIR=$(mkdir -p "$DEMO_DIR" && cd "$DEMO_DIR" && pwd)
export DATA_ROOT_DIR=$DEMO_DIR OUTPUT_ROOT_DIR=$DEMO_DIR/runs length batch_size PYTHON
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}

final_checkpoint() {  # the checkpoint of the last step of a run
    ls "$1"/gs*.pkl | sort -V | tail -n 1
}

teacher() {  # teacher NAME JSON SEED: train one teacher with run_mnli_train.sh, timed
    echo "=== ${1}: run_mnli_train.sh ($2)"
    local start=$SECONDS
    env OUTPUT_DIR="$OUTPUT_ROOT_DIR/$1" model_config_json_file="$2" torch_seed="$3" \
        ep="$teacher_ep" lr="$teacher_lr" bash "$here/run_mnli_train.sh" --PRINT_EVERY 100 \
        > "$OUTPUT_ROOT_DIR/$1.log" 2>&1 || { tail -n 20 "$OUTPUT_ROOT_DIR/$1.log"; exit 1; }
    echo $((SECONDS - start)) > "$OUTPUT_ROOT_DIR/$1/seconds.txt"
    grep "Acc:" "$OUTPUT_ROOT_DIR/$1/eval_results.txt" | tail -n 1
}

"$PYTHON" "$here/demo/make_demo_data.py" --output_dir "$DEMO_DIR" --n_train "$n_train" --n_dev "$n_dev"
mkdir -p "$OUTPUT_ROOT_DIR"
teacher teacher demo_teacher.json 9580
teacher teacher2 demo_teacher2.json 1234

# The students: alone, distilled with each recipe, EMD and multi-teacher, and the table.
TEACHER_CKPT=$(final_checkpoint "$OUTPUT_ROOT_DIR/teacher") \
TEACHER_CKPT_2=$(final_checkpoint "$OUTPUT_ROOT_DIR/teacher2") \
ep=$student_ep lr=$student_lr runs=$runs matches="$here/jsons/matches_L4t_from_6_layers.json" \
alone_json=demo_student_alone.json tiny_json=demo_distill_tiny.json multi_json=demo_distill_multi.json \
    bash "$here/compare_recipes.sh"
