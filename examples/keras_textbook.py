"""The textbook's Keras code, unchanged, diagnosed by trainability on Keras' PyTorch backend:
He normal and He fan_avg (VarianceScaling) Dense layers, and the three small models with
LeakyReLU(alpha=0.2), PReLU and SELU with LeCun normal. Keras 3 on PyTorch is a torch module
underneath, so `diagnose`, `initialize` and the `doctor` command take these models as they are.

Run: python examples/keras_textbook.py
     trainability doctor examples/keras_textbook.py:leaky_relu_model
(needs `pip install 'trainability[keras]'`; KERAS_BACKEND=torch must be set before Keras is imported)
"""

import os

os.environ.setdefault("KERAS_BACKEND", "torch")

import keras  # noqa: E402 - after the backend is chosen
import torch  # noqa: E402

from trainability import diagnose, initialize  # noqa: E402

# The textbook writes tf.keras.layers.Dense; with Keras 3 the same classes are keras.layers.Dense.


def he_normal_model() -> keras.Model:
    # He Normal
    he_norm = keras.layers.Dense(10, activation="relu", kernel_initializer="he_normal")
    return keras.Sequential([he_norm, keras.layers.Dense(1)])


def he_avg_model() -> keras.Model:
    # He using fan avg
    avg_init = keras.initializers.VarianceScaling(scale=2, mode="fan_avg", distribution="uniform")
    he_avg_init = keras.layers.Dense(10, activation="relu", kernel_initializer=avg_init)
    return keras.Sequential([he_avg_init, keras.layers.Dense(1)])


def leaky_relu_model() -> keras.Model:
    # Example of a model using LeakyReLU
    return keras.Sequential([
        keras.layers.Dense(10, kernel_initializer="he_normal"),
        keras.layers.LeakyReLU(alpha=0.2),
        keras.layers.Dense(1),
    ])  # fmt: skip


def prelu_model() -> keras.Model:
    # Example of a model using PReLU
    return keras.Sequential([
        keras.layers.Dense(10, kernel_initializer="he_normal"),
        keras.layers.PReLU(),
        keras.layers.Dense(1),
    ])  # fmt: skip


def selu_model() -> keras.Model:
    # Example of a model using SELU
    return keras.Sequential([
        keras.layers.Dense(10, kernel_initializer="lecun_normal", activation="selu"),
        keras.layers.Dense(1),
    ])  # fmt: skip


def example_batch() -> torch.Tensor:
    """Eight standardized features per sample (the doctor command builds the model on it)."""
    return torch.randn(64, 8, generator=torch.Generator().manual_seed(0))


if __name__ == "__main__":
    x = example_batch()
    for make in (he_normal_model, he_avg_model, leaky_relu_model, prelu_model, selu_model):
        model = make()
        report = diagnose(model, x)  # a Keras model that never ran is built on the batch
        print(f"--- {make.__name__}\n{report}\n")
        print(f"{initialize(model)}\n")
