"""Data: the lab layout (lab), the sample generator (sample), TFRecord shards
(tfrecords) and the tf.data input pipeline (pipeline)."""
