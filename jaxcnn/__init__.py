"""jaxcnn: JAX/Flax training for image CNNs, Keras-simple, from one CPU to many accelerators.

`import jaxcnn` never imports TensorFlow; the tf.data pipelines load it lazily.
"""

__version__ = "0.1.0"
