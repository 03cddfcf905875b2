#!/usr/bin/env bash
# Distill several fine-tuned teachers into one student: the student learns from the average of
# the teachers' logits. The teachers are the enabled entries of the JSON's "teachers" list.
# Every variable below can be set from the environment: `ep=1 bash run_mnli_distill_multiteacher.sh`.
# Arguments after the script name go to main.py as they are.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

: "${OUTPUT_ROOT_DIR:=output-root-dir}"
: "${DATA_ROOT_DIR:=data-root-dir}"       # holds GLUE's task folders (MNLI/, RTE/, ...), or a custom task's files
: "${dataset:=}"                          # or a Hugging Face dataset in its place: nyu-mll/glue, or a folder
: "${task:=mnli}"                         # a GLUE task (cola sst-2 mrpc sts-b qqp mnli qnli rte wnli) or custom
: "${model_config_json_file:=DistillMultiBert.json}"  # set each teacher's checkpoint there
: "${accu:=1}"
: "${ep:=10}"
: "${recipe:=published}"  # published: the original recipe; recommended: see pipeline/recipes.py
if [[ $recipe == published ]]; then  # another recipe brings its own, unless set here
    : "${lr:=2e-5}"
    : "${temperature:=8}"  # not used for a regression task (task=sts-b): KD is the MSE of the outputs
fi
: "${batch_size:=32}"
: "${length:=128}"
: "${torch_seed:=9580}"
: "${PYTHON:=python}"

# The original scripts took lr in units of 1e-5 (lr=2: 2e-5); a bare integer still means that.
if [[ ${lr:-} =~ ^[0-9]+$ ]]; then
    echo "lr=$lr is read in units of 1e-5, as the original scripts did: learning rate ${lr}e-5"
    lr="${lr}e-5"
fi

[[ "$model_config_json_file" == */* ]] || model_config_json_file="${here}/jsons/${model_config_json_file}"
: "${OUTPUT_DIR:=${OUTPUT_ROOT_DIR}/${task}_${recipe}${temperature:+_t$temperature}_multiteacher${lr:+_lr$lr}_e${ep}_bs${batch_size}}"  # this run's folder (main.py makes it once its checks have passed)

# The task's files, or the dataset (docs/tasks.md, From the Hub).
data=(--data_dir "$DATA_ROOT_DIR")
[[ -z $dataset ]] || data=(--dataset "$dataset")
"$PYTHON" -u "${here}/main.py" \
    "${data[@]}" \
    --output_dir "$OUTPUT_DIR" \
    --model_config_json "$model_config_json_file" \
    --task_name "$task" \
    --do_train --do_eval \
    --max_seq_length "$length" \
    --train_batch_size "$batch_size" \
    --gradient_accumulation_steps "$accu" \
    --num_train_epochs "$ep" \
    --random_seed "$torch_seed" \
    --recipe "$recipe" ${lr:+--learning_rate "$lr"} ${temperature:+--temperature "$temperature"} \
    --ckpt_frequency 1 \
    --fp16 \
    "$@"
