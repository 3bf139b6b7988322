"""Pure-PyTorch reference of every ELMo op: the definition of correct, and the ``ref`` backend."""
from .bilm import BiLmOutput, bilm_ref
from .char_ids import add_sentence_boundaries, batch_to_ids_ref, length_mask, remove_sentence_boundaries, token_to_ids
from .lstmp import lstmp_ref, lstmp_scan, reverse_within_lengths
from .scalar_mix import scalar_mix_ref
from .token_encoder import char_cnn_ref, highway_ref, token_encoder_ref

__all__ = [
    "BiLmOutput",
    "add_sentence_boundaries",
    "batch_to_ids_ref",
    "bilm_ref",
    "char_cnn_ref",
    "highway_ref",
    "length_mask",
    "lstmp_ref",
    "lstmp_scan",
    "remove_sentence_boundaries",
    "reverse_within_lengths",
    "scalar_mix_ref",
    "token_encoder_ref",
    "token_to_ids",
]
