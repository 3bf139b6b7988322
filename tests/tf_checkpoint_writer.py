"""Write the fixture model's tensors as a TF1-format checkpoint (run by tests/test_convert_tf.py).

A separate process: TensorFlow and Triton each bring LLVM, and importing TensorFlow before Triton in
one process aborts (LLVM options registered twice), so the test process never imports TensorFlow.

    python tests/tf_checkpoint_writer.py WEIGHTS.hdf5 PREFIX STYLE [PREFIX STYLE ...]   (STYLE: train or hub)
"""
from __future__ import annotations

import sys

import h5py
import numpy as np

LSTM = "RNN_{r}/RNN/MultiRNNCell/Cell{k}/LSTMCell/"
TRAIN_LSTM = "lm/RNN_{r}/rnn/multi_rnn_cell/cell_{k}/lstm_cell/"
HUB_LSTM = "bilm/RNN_{r}/RNN/MultiRNNCell/Cell{k}/rnn/lstm_cell/"
# Variables a real checkpoint also holds, which the converter must leave out.
EXTRA = {"lm/softmax/W": (7, 3), "lm/CNN/W_cnn_0/Adagrad": (1, 1, 1, 1), "global_step": (), "aggregation/weights": (3,)}


def tf_name(name: str, style: str) -> str:
    """The checkpoint variable name of a ``dump_weights`` dataset name, bilm-tf training or TF-Hub style."""
    for r in range(2):
        for k in range(8):
            prefix = LSTM.format(r=r, k=k)
            if name.startswith(prefix):
                leaf = {"W_0": "kernel", "B": "bias", "W_P_0": "projection/kernel"}[name[len(prefix):]]
                return (TRAIN_LSTM if style == "train" else HUB_LSTM).format(r=r, k=k) + leaf
    return ("lm/" if style == "train" else "bilm/") + name


def write(weights: str, prefix: str, style: str) -> None:
    """One checkpoint at ``prefix`` holding the tensors of ``weights`` under ``style``'s names."""
    import tensorflow as tf

    tensors = {}
    with h5py.File(weights, "r") as f:
        f.visititems(lambda n, o: tensors.__setitem__(tf_name(n, style), o[...]) if isinstance(o, h5py.Dataset) else None)
    tensors.update({n: np.ones(s, np.float32) for n, s in EXTRA.items()})
    graph = tf.Graph()
    with graph.as_default():
        variables = [tf.compat.v1.get_variable(n, initializer=tf.constant(v)) for n, v in tensors.items()]
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, prefix, write_meta_graph=False)


if __name__ == "__main__":
    for i in range(2, len(sys.argv), 2):
        write(sys.argv[1], sys.argv[i], sys.argv[i + 1])
