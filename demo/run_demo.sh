#!/usr/bin/env bash
# The whole example on a synthetic MNLI-layout corpus, on any machine, with nothing to download:
# train two small teachers (one config, two seeds) with run_mnli_train.sh, then
# tools/compare_recipes.sh trains the student alone and distills it (recommended recipe, BERT-EMD,
# multi-teacher) with the repository's scripts, prints the results table and, when matplotlib
# is installed, draws the runs into $DEMO_DIR/runs/runs.png.
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
: "${runs:=alone recommended emd multiteacher}"  # rows (see tools/compare_recipes.sh; add published)
: "${parallel:=2}"           # runs at the same time, each with its share of the cores
                             # (or with OMP_NUM_THREADS threads, when it is set)
: "${PYTHON:=python}"

export DEMO_DIR=$(mkdir -p "$DEMO_DIR" && cd "$DEMO_DIR" && pwd)
export DATA_ROOT_DIR=$DEMO_DIR OUTPUT_ROOT_DIR=$DEMO_DIR/runs length batch_size PYTHON
(( student_n_train <= n_train )) || { echo "student_n_train ($student_n_train) must not exceed n_train ($n_train)" >&2; exit 1; }
source "$here/tools/timed_runs.sh"  # start_run, wait_for_runs; it checks $parallel

final_checkpoint() {  # the checkpoint of the last step of a run
    ls "$1"/gs*.pkl | sort -V | tail -n 1
}

PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m demo.make_demo_data --output_dir "$DEMO_DIR" --n_train "$n_train" --n_dev "$n_dev"
mkdir -p "$OUTPUT_ROOT_DIR"
# Two teachers of one config and two seeds, side by side when parallel > 1.
start_run teacher run_mnli_train.sh model_config_json_file="$here/demo/jsons/teacher.json" torch_seed=9580 \
    ep="$teacher_ep" lr="$teacher_lr"
start_run teacher2 run_mnli_train.sh model_config_json_file="$here/demo/jsons/teacher.json" torch_seed=1234 \
    ep="$teacher_ep" lr="$teacher_lr"
wait_for_runs

# The students: alone, distilled with each recipe, EMD and multi-teacher, and the table.
TEACHER_CKPT=$(final_checkpoint "$OUTPUT_ROOT_DIR/teacher") \
TEACHER_CKPT_2=$(final_checkpoint "$OUTPUT_ROOT_DIR/teacher2") \
n_train=$student_n_train ep=$student_ep lr=$student_lr runs=$runs parallel=$parallel \
matches="$here/demo/jsons/matches_L4_from_4_layers.json" alone_json="$here/demo/jsons/student_alone.json" \
tiny_json="$here/demo/jsons/distill_tiny.json" multi_json="$here/demo/jsons/distill_multi.json" \
    bash "$here/tools/compare_recipes.sh" &
wait $!  # (in the background, so that a TERM reaches the traps of timed_runs.sh at once)
