import numpy as np

from gradnap.method.profiles import (
    dataset_mean,
    gradnap_profile,
    nap_profile,
    navai_profile,
    neuron_std,
)


def test_gradnap_profile_by_hand():
    act_sum = np.array([[2.0, 6.0, 0.0]])  # (C=1, W=3), counts 2, 2, 0
    grad_sum = np.array([[-1.0, 4.0, 0.0]])
    count = np.array([2, 2, 0])
    mean = np.array([[0.5, 1.0, 7.0]])
    # Ā = [1, 3, (no data: M)], Ḡ = [-0.5, 2, 0] -> mask [0.25, 1, 0]
    p = gradnap_profile(act_sum, grad_sum, count, mean)
    np.testing.assert_allclose(p, [[0.5 * 0.25, 2.0 * 1.0, 0.0]])
    np.testing.assert_allclose(navai_profile(act_sum, count, mean), [[0.5, 2.0, 0.0]])


def test_gradnap_profile_zero_gradient_is_zero_not_nan():
    p = gradnap_profile(np.ones((2, 3)), np.zeros((2, 3)), np.array([1, 1, 1]), np.zeros((2, 3)))
    assert np.array_equal(p, np.zeros((2, 3)))


def test_dataset_mean_uses_per_position_counts():
    act_sum = np.array([[[2.0, 0.0]], [[4.0, 3.0]]])  # (G=2, C=1, W=2)
    count = np.array([[2, 0], [2, 1]])
    np.testing.assert_allclose(dataset_mean(act_sum, count), [[1.5, 3.0]])


def test_nap_profile_and_neuron_std():
    # one neuron, values 1, 3 at two valid positions: mean 2, std 1
    std = neuron_std(np.array([[1.0, 3.0]]), np.array([10.0]), np.array([1, 1]))
    np.testing.assert_allclose(std, [1.0])
    p = nap_profile(np.array([[6.0, 2.0]]), np.array([2, 2]), np.array([[2.0, 0.5]]), std)
    np.testing.assert_allclose(p, [[1.0, 0.5]])
    dead = nap_profile(np.ones((1, 2)), np.array([1, 1]), np.zeros((1, 2)), np.zeros(1))
    assert np.array_equal(dead, np.zeros((1, 2)))
