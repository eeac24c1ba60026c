"""``@pytest.mark.fashion_mnist``: the test reads Fashion-MNIST (Debian's dataset-fashion-mnist). Without it
the test is skipped, or fails with ECCENTRIC_REQUIRE_DATA=1 (what CI sets: a CI run must not pass by
skipping what it could not run)."""
import os

import pytest

from eccentric_det.data.fashion_det import DEFAULT_FASHION_ROOT

MISSING = f"Fashion-MNIST not found in {DEFAULT_FASHION_ROOT} (apt-get install dataset-fashion-mnist)"


def pytest_configure(config):
    config.addinivalue_line("markers", "fashion_mnist: reads Fashion-MNIST (skipped without it, unless "
                                       "ECCENTRIC_REQUIRE_DATA=1)")


def pytest_runtest_setup(item):
    if item.get_closest_marker("fashion_mnist") is None:
        return
    if not os.path.exists(os.path.join(DEFAULT_FASHION_ROOT, "t10k-images-idx3-ubyte.gz")):
        if os.environ.get("ECCENTRIC_REQUIRE_DATA") == "1":
            pytest.fail(f"{MISSING}; ECCENTRIC_REQUIRE_DATA=1 requires it")
        pytest.skip(MISSING)
