"""Data: the lab layout (lab), the sample generator (sample), TFRecord files and
tf.train.Example records without TensorFlow (records), prepared shards (tfrecords)
and the input pipeline (pipeline)."""
