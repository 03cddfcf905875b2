"""BERT-EMD distillation: main.py's pipeline with the EMDDistiller of distiller_emd.py.

The options are main.py's; the layer mapping is learnt, so --matches is not used.
"""
import main
from distiller_emd import EMDDistiller
from modeling import BertForGLUESimpleAdaptor


def build_emd_distiller(args, train_config, teachers, student, matches):
    if len(teachers) != 1:
        raise ValueError(f"main.emd.py distills exactly one teacher; {args.model_config_json} "
                         f"enables {len(teachers)}")
    if matches:
        raise ValueError("main.emd.py finds its own layer mapping: drop --matches")
    return EMDDistiller(train_config, main.distillation_config(args), teachers[0], student,
                        BertForGLUESimpleAdaptor, BertForGLUESimpleAdaptor,
                        emd_weight=args.intermediate_weight)


if __name__ == "__main__":
    main.main(build_emd_distiller)
