#!/usr/bin/env bash
# Compare distillation recipes on one dataset and one teacher: the student trained alone, the
# published recipe, the recommended recipe and its ablation (the start from the teacher's weights
# alone, then with KD), the recommended recipe with MiniLMv2's relations (in place of its
# matches, or beside them) or TinyBERT's attention scores beside them, BERT-EMD and
# multi-teacher, all with the same epochs, batch and length.
# Prints a table of dev accuracy and wall time (Markdown, and JSON in
# $OUTPUT_ROOT_DIR/results.json; a row whose student stopped learning is marked (!)), and
# draws the rows' losses and dev accuracy into $OUTPUT_ROOT_DIR/runs.png when matplotlib is
# installed.
#
#   DATA_ROOT_DIR=data BERT_DIR=bert TEACHER_CKPT=teacher/gs747.pkl [TEACHER_CKPT_2=...] \
#       bash tools/compare_recipes.sh
#
# BERT_DIR holds the teacher's vocab.txt and config.json; TEACHER_CKPT is the fine-tuned teacher
# (run_mnli_train.sh writes it; the table's teacher row is read from the folder holding it).
# Multi-teacher runs only when TEACHER_CKPT_2 is set. Shorter runs: `ep=1`, `n_train=2000`.
# The relation and score rows read `relation_matches` and `score_matches` (presets for a 12-layer
# teacher by default; a 6-layer one takes L4_relation_last_from6 and L4_att_score_mse_from6).
# `parallel=2` runs two rows at once with half the cores each (or OMP_NUM_THREADS each, when it
# is set): on CPUs this finishes sooner, because one small model does not keep several cores busy.
# `extra_main_args="--no_cuda"` gives main.py options to every row.
set -euo pipefail
tools=$(cd "$(dirname "$0")" && pwd)
here=$(dirname "$tools")  # the repository: its scripts run the rows

: "${DATA_ROOT_DIR:?set DATA_ROOT_DIR: the folder holding MNLI/train.tsv and the dev files}"
: "${TEACHER_CKPT:?set TEACHER_CKPT: the fine-tuned teacher checkpoint}"
: "${OUTPUT_ROOT_DIR:=compare-output}"
: "${ep:=3}"
: "${lr:=1e-4}"             # of the student alone and the published recipe (the others: their recipe's)
: "${batch_size:=32}"
: "${length:=64}"
: "${torch_seed:=9580}"
: "${n_train:=0}"          # train on the first n_train pairs of train.tsv only (0: all of them)
: "${runs:=alone alone_recipe_lr published init_only init_kd recommended emd multiteacher}"  # rows, in this order
: "${matches:=L4t_hidden_mse L4_hidden_smmd}"  # the published recipe's matches (presets and/or JSON files)
: "${relation_matches:=L4_relation_last}"      # MiniLMv2's relations (rows relation, recommended_relation)
: "${score_matches:=L4_att_score_mse}"         # TinyBERT's attention scores (row recommended_scores)
: "${emd_recipe:=recommended}"    # the recipe of the EMD and multi-teacher rows
: "${multi_recipe:=recommended}"
: "${alone_json:=TrainTinyAlone.json}"          # the JSON configs (in jsons/, or paths)
: "${tiny_json:=DistillBertToTiny.json}"
: "${multi_json:=DistillMultiBertToTiny.json}"
: "${parallel:=1}"        # rows run at the same time
: "${PYTHON:=python}"
export TEACHER_CKPT TEACHER_CKPT_2 PYTHON

known_runs="alone alone_recipe_lr published init_only init_kd recommended relation recommended_relation recommended_scores emd multiteacher"
for which in $runs; do  # every row is checked before the first one starts
    [[ " $known_runs " == *" $which "* ]] || { echo "unknown run '$which' in runs (expected: $known_runs)" >&2; exit 1; }
done
source "$tools/timed_runs.sh"  # start_run, wait_for_runs; it checks $parallel
# The rows choose their own learning rate, temperature and recipe: none is inherited.
export -n lr temperature recipe

mkdir -p "$OUTPUT_ROOT_DIR"
OUTPUT_ROOT_DIR=$(cd "$OUTPUT_ROOT_DIR" && pwd)
rm -f "$OUTPUT_ROOT_DIR/results.md" "$OUTPUT_ROOT_DIR/results.json"  # no old table after a failed run
data=$DATA_ROOT_DIR
if (( n_train > 0 )); then  # a subset: the header and the first n_train rows; the dev files as they are
    data=$OUTPUT_ROOT_DIR/data_first${n_train}
    mkdir -p "$data/MNLI"
    head -n $((n_train + 1)) "$DATA_ROOT_DIR/MNLI/train.tsv" > "$data/MNLI/train.tsv"
    for dev in dev_matched.tsv dev_mismatched.tsv; do
        ln -sf "$(cd "$DATA_ROOT_DIR/MNLI" && pwd)/$dev" "$data/MNLI/$dev"
    done
fi

rows=()
teacher_dir=$(dirname "$TEACHER_CKPT")
[[ -f "$teacher_dir/eval_results.jsonl" ]] && rows+=("Teacher=$teacher_dir")
if [[ -n "${TEACHER_CKPT_2:-}" && -f "$(dirname "$TEACHER_CKPT_2")/eval_results.jsonl" ]]; then
    rows+=("Teacher 2=$(dirname "$TEACHER_CKPT_2")")
fi

run() {  # run NAME "TABLE ROW" SCRIPT [VAR=VALUE ...] [-- MAIN_ARG ...]: one row of the table
    local name=$1 row=$2 script=$3
    shift 3
    rows+=("$row=$OUTPUT_ROOT_DIR/$name")
    start_run "$name" "$script" DATA_ROOT_DIR="$data" ep="$ep" batch_size="$batch_size" \
        length="$length" torch_seed="$torch_seed" "$@"
}

# The recommended recipe's learning rate, written as a person writes it in a variable (5e-4).
recipe_lr=$(cd "$here" && "$PYTHON" -c 'import numpy; from pipeline.recipes import RECIPES
print(numpy.format_float_scientific(RECIPES["recommended"]["learning_rate"], trim="-", exp_digits=1))')
for which in $runs; do
    case $which in
        alone) run alone "Student alone (hard labels), lr $lr" run_mnli_train.sh \
                   model_config_json_file="$alone_json" lr="$lr" ;;
        alone_recipe_lr) run alone_recipe_lr "Student alone (hard labels), lr $recipe_lr" run_mnli_train.sh \
                             model_config_json_file="$alone_json" lr="$recipe_lr" ;;
        published) run published "Published recipe, lr $lr" run_mnli_distill_T4tiny.sh \
                       model_config_json_file="$tiny_json" recipe=published lr="$lr" matches="$matches" ;;
        # The ablation of the recommended recipe: its start from the teacher's weights alone, then
        # with KD on the logits, then (the recipe itself) with the intermediate matches too. Without
        # matches only logits are read, so the teacher's are cached after the first epoch.
        init_only) run init_only "Init from the teacher only (hard labels)" run_mnli_distill_T4tiny.sh \
                       model_config_json_file="$tiny_json" recipe=recommended \
                       -- --matches --kd_loss_weight 0 --cache_teacher_logits ;;
        init_kd) run init_kd "Init + KD (no matches)" run_mnli_distill_T4tiny.sh \
                     model_config_json_file="$tiny_json" recipe=recommended -- --matches --cache_teacher_logits ;;
        recommended) run recommended "Recommended recipe, lr $recipe_lr" run_mnli_distill_T4tiny.sh \
                         model_config_json_file="$tiny_json" recipe=recommended matches="$matches" ;;
        # The recommended recipe with MiniLMv2's relations in place of its matches, then beside
        # them, and with TinyBERT's pre-softmax attention scores beside them (docs/relations.md).
        relation) run relation "Init + KD + relations ($relation_matches)" run_mnli_distill_T4tiny.sh \
                      model_config_json_file="$tiny_json" recipe=recommended matches="$relation_matches" ;;
        recommended_relation) run recommended_relation "Recommended recipe + relations" run_mnli_distill_T4tiny.sh \
                                  model_config_json_file="$tiny_json" recipe=recommended \
                                  matches="$matches $relation_matches" ;;
        recommended_scores) run recommended_scores "Recommended recipe + attention scores" run_mnli_distill_T4tiny.sh \
                                model_config_json_file="$tiny_json" recipe=recommended \
                                matches="$matches $score_matches" ;;
        emd) run emd "BERT-EMD ($emd_recipe)" run_mnli_distill_T4tiny_emd.sh \
                 model_config_json_file="$tiny_json" recipe="$emd_recipe" ;;
        multiteacher)
            if [[ -z "${TEACHER_CKPT_2:-}" ]]; then echo "=== multi-teacher skipped: TEACHER_CKPT_2 is not set"; continue; fi
            run multiteacher "Multi-teacher ($multi_recipe)" run_mnli_distill_multiteacher.sh \
                model_config_json_file="$multi_json" recipe="$multi_recipe" ;;
    esac
done

wait_for_runs
echo
PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m tools.report --json "$OUTPUT_ROOT_DIR/results.json" --parallel "$parallel" ${rows[@]+"${rows[@]}"} | tee "$OUTPUT_ROOT_DIR/results.md"
# One picture of the rows' losses and dev accuracy; matplotlib is optional, so is the picture.
if "$PYTHON" -c "import matplotlib" 2>/dev/null; then
    PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m tools.plot_runs --output "$OUTPUT_ROOT_DIR/runs.png" ${rows[@]+"${rows[@]}"} \
        || echo "=== picture not drawn (see the error above); the table stands"
else
    echo "=== picture skipped: matplotlib is not installed (pip install matplotlib)"
fi
