"""What a run does with its final student: GLUE's submission files (--do_test) and a Hugging
Face folder (--export_dir); and --do_predict without --do_train, which evaluates the JSON's
trained student instead of training one."""

from distillation import checkpoint_steps
from pipeline.evaluation import record_evaluation
from pipeline.exporting import export_model
from pipeline.run_folder import make_output_dir, write_run_records
from pipeline.submission import write_submissions
from pipeline.trained_models import TrainedModel, load_trained_entry


def use_final_student(student, entry, task, output_dir, test_sets, export_dir, batch_size, device, step=None):
    """Submission files for test_sets ({name: (examples, features)}) in output_dir, and the
    export of the student (of model_config entry `entry`) to export_dir, each when asked for.
    step: the student's in the run's records (default: its newest checkpoint's, the last step)."""
    if test_sets:
        write_submissions(student, test_sets, output_dir, batch_size, device, task.label_list)
    if export_dir:
        steps = checkpoint_steps(output_dir)
        step = step if step is not None else steps[-1] if steps else None
        trained = TrainedModel(student, entry.tokenizer, entry.bert_config, entry.vocab_file, entry.do_lower_case,
                               f"the final student of {output_dir}", task, output_dir, step)  # fmt: skip
        export_model(trained, export_dir)


def evaluate_trained_student(setup, task, dev_loaders, output_dir, test_sets, export_dir, batch_size, device):
    """The trained student of a model config (a model_config.ModelSetup), evaluated on the dev
    loaders (as step 0 of output_dir's records) and then used as a final student. Every tensor
    must load: a missing classifier would score at chance."""
    student = load_trained_entry(setup.student, task).to(device)
    make_output_dir(output_dir)
    write_run_records(output_dir, task, setup.source)
    if dev_loaders:
        record_evaluation(output_dir, 0, student, dev_loaders, device, task)
    # Its evaluation is step 0 of output_dir's records: the model as given, not trained there.
    use_final_student(
        student, setup.student, task, output_dir, test_sets, export_dir, batch_size, device, step=0
    )
