"""airbench's whitening first layer: a frozen conv fitted to the training patches' covariance."""

from __future__ import annotations

import jax.numpy as jnp


def whitening_kernel(images, kernel_size: int = 2, eps: float = 5e-4, mean=None, std=None) -> jnp.ndarray:
    """[k, k, C, 2 k k C] conv kernel: the training patches' covariance eigenvectors, largest first,
    scaled by 1/sqrt(eigenvalue + eps), and their negatives (airbench's whitening layer).

    `images`: float NHWC in [0, 1]; `mean`/`std` the normalization the model applies first.
    """
    x = jnp.asarray(images, jnp.float32)
    if mean is not None:
        x = (x - jnp.asarray(mean)) / jnp.asarray(std)
    n, h, w, c = x.shape
    k = kernel_size
    patches = jnp.stack([x[:, i:h - k + 1 + i, j:w - k + 1 + j, :] for i in range(k) for j in range(k)], axis=3)
    flat = patches.reshape(-1, k * k * c)  # (kh, kw, c) order, as a flax kernel's leading axes
    cov = flat.T @ flat / flat.shape[0]
    eigenvalues, eigenvectors = jnp.linalg.eigh(cov)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    scaled = eigenvectors / jnp.sqrt(eigenvalues + eps)
    return jnp.concatenate([scaled, -scaled], axis=1).reshape(k, k, c, 2 * k * k * c)
