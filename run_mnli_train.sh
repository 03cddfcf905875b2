#!/usr/bin/env bash
# Train the teacher: fine-tune BERT-base on MNLI (the student in the JSON, with no teacher enabled).
# Every variable below can be set from the environment: `ep=1 lr=3e-5 bash run_mnli_train.sh`.
# Arguments after the script name go to main.py as they are (e.g. --no_cuda, --PRINT_EVERY 50).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

: "${OUTPUT_ROOT_DIR:=output-root-dir}"   # one folder per run is made here
: "${DATA_ROOT_DIR:=data-root-dir}"       # holds GLUE's task folders: MNLI/train.tsv, dev_matched.tsv, ...
: "${dataset:=}"                          # or a Hugging Face dataset in its place: nyu-mll/glue, or a folder
: "${task:=mnli}"                         # a GLUE task (cola sst-2 mrpc sts-b qqp mnli qnli rte wnli) or custom
: "${model_config_json_file:=TrainBertTeacher.json}"  # a file in jsons/, or a path
: "${accu:=1}"            # gradient accumulation steps
: "${ep:=3}"              # epochs
: "${lr:=2e-5}"           # learning rate (a bare integer is in units of 1e-5: lr=2 is 2e-5)
: "${batch_size:=32}"
: "${length:=128}"        # max_seq_length
: "${torch_seed:=9580}"
: "${PYTHON:=python}"

# The original scripts took lr in units of 1e-5 (lr=2: 2e-5); a bare integer still means that.
if [[ ${lr:-} =~ ^[0-9]+$ ]]; then
    echo "lr=$lr is read in units of 1e-5, as the original scripts did: learning rate ${lr}e-5"
    lr="${lr}e-5"
fi

[[ "$model_config_json_file" == */* ]] || model_config_json_file="${here}/jsons/${model_config_json_file}"
: "${OUTPUT_DIR:=${OUTPUT_ROOT_DIR}/${task}_teacher_lr${lr}_e${ep}_bs${batch_size}_l${length}}"  # this run's folder (main.py makes it once its checks have passed)

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
    --learning_rate "$lr" \
    --random_seed "$torch_seed" \
    --ckpt_frequency 1 \
    --fp16 \
    "$@"
