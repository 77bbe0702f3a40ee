import numpy as np
import pytest

from gradnap.analysis.responsiveness import responsiveness, top_neurons
from gradnap.errors import GradnapError


def test_responsiveness_signs_on_hand_profile():
    profile = np.array(
        [
            [1.0, 2.0, -0.5],  # sum +2.5, |.| 3.5
            [-1.0, -1.0, 0.5],  # sum -1.5, |.| 2.5
            [0.0, 0.0, 0.0],
            [3.0, -3.0, 0.0],  # sum 0 -> sign 0
            [-4.0, 0.0, 0.0],
        ]
    )
    np.testing.assert_allclose(responsiveness(profile), [3.5, -2.5, 0.0, 0.0, -4.0])
    assert top_neurons(profile, k=3).tolist() == [4, 0, 1]
    assert top_neurons(profile, k=10).tolist() == [4, 0, 1, 2, 3]


def test_top_neurons_ties_go_to_lower_index():
    profile = np.array([[1.0], [-2.0], [2.0], [1.0], [-1.0]])
    assert top_neurons(profile, k=5).tolist() == [1, 2, 0, 3, 4]
    with pytest.raises(GradnapError):
        top_neurons(profile, k=0)
    with pytest.raises(GradnapError):
        responsiveness(np.zeros(3))
