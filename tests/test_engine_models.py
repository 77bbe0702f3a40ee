"""Old home of the engine tests' models; kept only for ``test_engine_cone.py``.

The models and comparison helpers are in ``helpers.py``, the one-thread fixture in
``conftest.py``. ``test_engine_cone.py`` (being rewritten elsewhere) still imports them from
here: once it imports from ``helpers`` and says ``pytestmark =
pytest.mark.usefixtures("one_thread")``, delete this module.
"""

import pytest

from helpers import (  # noqa: F401
    N_FEATURES,
    TorchaudioLike,
    assert_engines_agree,
    expand,
    mixed_model,
    rel_err,
    tiny_wav2letter,
)


@pytest.fixture(autouse=True)
def single_thread(one_thread):
    """``one_thread`` under its old name, for the modules that import it from here."""
    yield
