"""BERT-EMD distillation: main.py's pipeline with the EMD distillers.

The options are main.py's; the layer mapping is learnt, so --matches is not used. Without any
--emd_* option the distiller is the tutorial's EMDDistiller (distiller_emd.py); with one, the
FullEMDDistiller of distiller_emd_full.py (attention maps, learnt layer weights, two stages).
"""
import main
from distiller_emd import EMDDistiller
from distiller_emd_full import FullEMDDistiller
from modeling import BertForGLUESimpleAdaptor
from options import emd_options_given


def build_emd_distiller(args, train_config, teachers, student, matches):
    if len(teachers) != 1:
        raise ValueError(f"main.emd.py distills exactly one teacher; {args.model_config_json} "
                         f"enables {len(teachers)}")
    if matches:
        raise ValueError("main.emd.py finds its own layer mapping: drop --matches")
    common = (train_config, main.distillation_config(args), teachers[0], student,
              BertForGLUESimpleAdaptor, BertForGLUESimpleAdaptor)
    if not emd_options_given(args):
        return EMDDistiller(*common, emd_weight=args.intermediate_weight)
    # Its features_read() asks main.py for attention maps when attention EMD is on.
    return FullEMDDistiller(*common, emd_weight=args.intermediate_weight,
                            attention=args.emd_attention, update_weights=args.emd_update_weights,
                            separate_weights=args.emd_separate_weights,
                            two_stage=args.emd_two_stage,
                            intermediate_share=args.emd_intermediate_share or 0.5)


if __name__ == "__main__":
    main.main(build_emd_distiller)
