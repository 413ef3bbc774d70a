"""The `fake_devices` pytest fixture (imports pytest; `jaxcnn.testing` loads it on demand).

    # conftest.py
    from jaxcnn.testing import fake_devices  # noqa: F401  (makes the fixture available)

    def test_my_model_on_8_devices(fake_devices):
        assert_same_on_devices(MyModel(), (16, 16, 3), n=len(fake_devices))

Eight devices by default; another count with
`@pytest.mark.parametrize("fake_devices", [4], indirect=True)`.
"""

from __future__ import annotations

import pytest

from jaxcnn.testing.devices import use_fake_devices


@pytest.fixture(scope="session")
def fake_devices(request):
    """`n` fake CPU devices (default 8), set before JAX starts; see `use_fake_devices`."""
    return use_fake_devices(getattr(request, "param", 8))
