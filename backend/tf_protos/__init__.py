"""The parts of TensorFlow's own protos that Boxwise reads: `tf.train.Example` (TFRecords),
`Event` (TensorBoard scalars) and `SavedModel` (the detection signature), as `.proto` subsets
with TensorFlow's field names and numbers under package `boxwise.tf`, so that reading them
never imports TensorFlow and never collides with TensorFlow's own messages when it is loaded.
Fields left out are kept as unknown fields by protobuf and skipped. The generated `*_pb2.py`
are checked in; `make proto` regenerates them.
"""
