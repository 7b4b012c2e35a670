"""stagewise.lm.dynamics on curves with known answers: sign flips and a peak followed by a decline."""

import pytest

from stagewise.lm.dynamics import peak_and_decline, sign_flip_step


def test_sign_flip_step_interpolates_the_zero():
    steps = [0, 100, 200, 300, 400]
    assert sign_flip_step(steps, [-3, -2, -1, 1, 2]) == 250.0  # the line from -1 at 200 to 1 at 300
    assert sign_flip_step(steps, [-3, -2, -1, 3, 2]) == 225.0  # from -1 to 3: a quarter of the way
    assert sign_flip_step(steps, [-3, -2, 0, 1, 2]) == 200.0  # exactly zero at a checkpoint
    assert sign_flip_step(steps, [2, 1, -1, -2, -3]) == 150.0  # either direction
    assert sign_flip_step(steps, [-3, -2, -1, -1, -2]) is None  # never
    assert sign_flip_step(steps, [-3, -1, 1, -2, 5]) == 150.0  # the first flip


def test_sign_flip_step_ignores_values_within_noise_of_zero():
    steps = [0, 100, 200, 300, 400]
    values = [-3, -2, 0.5, -2, -3]  # a blip within 2 s.e.: no flip
    assert sign_flip_step(steps, values, stderr=[0.5] * 5) is None
    assert sign_flip_step(steps, values) == 180.0  # counted when no stderr is given
    # a noisy positive value, then a signed one: the zero is between the last not-yet-positive checkpoint and the next
    assert sign_flip_step(steps, [-3, -2, 0.5, -1, 4], stderr=[0.5] * 5) == 320.0
    with pytest.raises(ValueError, match="steps must increase"):
        sign_flip_step([0, 0, 1], [1, 2, 3])
    with pytest.raises(ValueError, match="one shape"):
        sign_flip_step([0, 1], [1, 2, 3])


def test_peak_and_decline_known_answers():
    steps = [0, 1000, 2000, 3000, 4000]
    out = peak_and_decline(steps, [0.0, 1.0, 4.0, 3.0, 2.0], stderr=[0.1] * 5)
    assert out == {"peak_step": 2000, "peak": 4.0, "last": 2.0, "decline": 0.5, "declined": True}
    rising = peak_and_decline(steps, [0.0, 1.0, 2.0, 3.0, 4.0])
    assert rising["peak_step"] == 4000 and rising["decline"] == 0.0 and not rising["declined"]
    noisy = peak_and_decline(steps, [0.0, 1.0, 4.0, 3.9, 3.8], stderr=[0.1] * 5)  # 0.2 < 2 · 0.14
    assert noisy["peak_step"] == 2000 and not noisy["declined"]
    early = peak_and_decline(steps, [9.0, 1.0, 4.0, 3.0, 2.0], since=1000)  # the first stage left out
    assert early["peak_step"] == 2000
    with pytest.raises(ValueError, match="since"):
        peak_and_decline(steps, [0.0, 1.0, 4.0, 3.0, 2.0], since=5000)
