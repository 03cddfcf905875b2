#!/usr/bin/env bash
# The whole example on a synthetic MNLI-layout corpus, on any machine, with nothing to download:
# train two small teachers and a student alone, then distill (T4-tiny with matches, BERT-EMD,
# multi-teacher) with the four scripts of the repository, and print the results table.
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
: "${length:=64}"
: "${batch_size:=32}"
: "${teacher_ep:=3}"
: "${teacher_lr:=2e-4}"
: "${student_ep:=2}"
: "${student_lr:=2e-4}"
: "${temperature:=8}"
: "${PYTHON:=python}"

export DEMO_DIR=$(mkdir -p "$DEMO_DIR" && cd "$DEMO_DIR" && pwd)
export DATA_ROOT_DIR=$DEMO_DIR OUTPUT_ROOT_DIR=$DEMO_DIR/runs length batch_size PYTHON
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}

final_checkpoint() {  # the checkpoint of the last step of a run
    ls "$1"/gs*.pkl | sort -V | tail -n 1
}

run() {  # run NAME SCRIPT [VAR=VALUE ...]: one script into $OUTPUT_ROOT_DIR/NAME, timed
    local name=$1 script=$2
    shift 2
    echo "=== ${name}: ${script} $*"
    local start=$SECONDS
    env "$@" OUTPUT_DIR="$OUTPUT_ROOT_DIR/$name" bash "$here/$script" --PRINT_EVERY 100 \
        > "$DEMO_DIR/$name.log" 2>&1 || { tail -n 20 "$DEMO_DIR/$name.log"; exit 1; }
    echo $((SECONDS - start)) > "$OUTPUT_ROOT_DIR/$name/seconds.txt"
    grep "Acc:" "$OUTPUT_ROOT_DIR/$name/eval_results.txt" | tail -n 1
}

"$PYTHON" "$here/demo/make_demo_data.py" --output_dir "$DEMO_DIR" --n_train "$n_train" --n_dev "$n_dev"

run teacher run_mnli_train.sh model_config_json_file=demo_teacher.json ep=$teacher_ep lr=$teacher_lr
run teacher2 run_mnli_train.sh model_config_json_file=demo_teacher2.json ep=$teacher_ep lr=$teacher_lr torch_seed=1234
run student_alone run_mnli_train.sh model_config_json_file=demo_student_alone.json ep=$student_ep lr=$student_lr

export DEMO_TEACHER_CKPT=$(final_checkpoint "$OUTPUT_ROOT_DIR/teacher")
export DEMO_TEACHER2_CKPT=$(final_checkpoint "$OUTPUT_ROOT_DIR/teacher2")
run t4tiny run_mnli_distill_T4tiny.sh model_config_json_file=demo_distill_tiny.json \
    ep=$student_ep lr=$student_lr temperature=$temperature matches="$here/jsons/demo_matches.json"
run t4tiny_emd run_mnli_distill_T4tiny_emd.sh model_config_json_file=demo_distill_tiny.json \
    ep=$student_ep lr=$student_lr temperature=$temperature
run multiteacher run_mnli_distill_multiteacher.sh model_config_json_file=demo_distill_multi.json \
    ep=$student_ep lr=$student_lr temperature=$temperature

echo
"$PYTHON" "$here/demo/report.py" --json "$DEMO_DIR/results.json" \
    "Teacher=$OUTPUT_ROOT_DIR/teacher" "Teacher 2=$OUTPUT_ROOT_DIR/teacher2" \
    "T4-tiny alone (hard labels)=$OUTPUT_ROOT_DIR/student_alone" \
    "T4-tiny distilled (matches)=$OUTPUT_ROOT_DIR/t4tiny" \
    "T4-tiny BERT-EMD=$OUTPUT_ROOT_DIR/t4tiny_emd" \
    "T4-tiny multi-teacher=$OUTPUT_ROOT_DIR/multiteacher" | tee "$DEMO_DIR/results.md"
