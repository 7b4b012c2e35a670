"""SGLDConfig.rule hands out the rule a config checks a field with, and Interval & Interval narrows one."""

from __future__ import annotations

import re

import numpy as np
import pytest

from stagewise.config import ConfigError, Interval
from stagewise.sampling import SGLDConfig
from stagewise.sampling.settings import _FIELD_RULES

# Values of every kind a field may be given: numbers at and around the bounds, numpy scalars, bools, None, the
# names the string fields take, and things no field takes.
PROBES = [-1, 0, 1, 2, 10**7, -0.5, 0.0, 0.5, 0.99, 1.0, 1.5, float("nan"), float("inf"), np.int64(3),
          np.float64(0.5), True, False, None, "none", "rmsprop", "burnin", "always", "auto", "vmap", "loop",
          "float32", "float64", "bfloat16", "", [1]]
RULED = [name for name, rule in _FIELD_RULES.items() if rule is not None]


def test_every_field_but_the_devices_has_a_rule():
    assert set(_FIELD_RULES) == set(SGLDConfig.__dataclass_fields__)
    assert set(RULED) == set(SGLDConfig.__dataclass_fields__) - {"device", "trace_device"}


@pytest.mark.parametrize("name", RULED)
def test_rule_accepts_what_the_config_accepts_and_refuses_what_it_refuses(name):
    rule = SGLDConfig.rule(name)
    others = {} if name == "num_burnin" else {"num_burnin": 1}  # a burn-in for preconditioner="rmsprop"
    for value in PROBES:
        try:
            SGLDConfig(**{**others, name: value})
        except ConfigError as error:
            assert not rule.accepts(value), (name, value, str(error))
            assert f"{name} = {value!r} (accepted: {rule.describe()})" in str(error)
        else:
            assert rule.accepts(value), (name, value)


def test_an_unknown_name_is_refused_with_the_accepted_ones():
    accepted = r"\(accepted: step_size, nbeta, .*, observable_chunk\)$"
    with pytest.raises(ValueError, match=r"no field 'nbta' " + accepted) as info:
        SGLDConfig.rule("nbta")
    assert "'device'" not in str(info.value).split("accepted:")[1]


@pytest.mark.parametrize("name", ["device", "trace_device"])
def test_a_device_field_points_at_the_chapters_device_rule(name):
    with pytest.raises(ValueError, match=re.escape(f"SGLDConfig.rule({name!r})") + ".*DEVICE_NAME"):
        SGLDConfig.rule(name)


def test_num_burnin_is_the_base_range_a_frozen_preconditioner_narrows():
    assert SGLDConfig.rule("num_burnin").accepts(0)
    SGLDConfig(num_burnin=0)
    with pytest.raises(ConfigError, match="num_burnin = 0"):
        SGLDConfig(num_burnin=0, preconditioner="rmsprop")


@pytest.mark.parametrize("first, second, both", [
    (Interval(ge=1, integer=True), Interval(le=1024), Interval(ge=1, le=1024, integer=True)),
    (Interval(ge=1, integer=True), Interval(ge=4, le=10**6), Interval(ge=4, le=10**6, integer=True)),
    (Interval(gt=0), Interval(lt=1), Interval(gt=0, lt=1)),
    (Interval(ge=0), Interval(gt=0), Interval(gt=0)),  # equal bounds: the strict one
    (Interval(gt=0), Interval(ge=0), Interval(gt=0)),
    (Interval(ge=0, lt=1), Interval(le=1), Interval(ge=0, lt=1)),
    (Interval(gt=0, le=0.1), Interval(lt=0.1), Interval(gt=0, lt=0.1)),
    (Interval(gt=0), Interval(ge=2), Interval(ge=2)),
    (Interval(), Interval(gt=-1, le=3), Interval(gt=-1, le=3)),
])
def test_interval_and_interval_is_their_intersection(first, second, both):
    assert first & second == both
    assert second & first == both
    for value in [-2, -1, -0.5, 0, 0.05, 0.1, 0.5, 1, 1.0, 2, 3, 4, 64, 1024, 1025, 10**6, 10**6 + 1, True, None]:
        assert both.accepts(value) == (first.accepts(value) and second.accepts(value)), value


def test_narrowing_a_sampler_rule_reads_as_one_interval():
    chains = SGLDConfig.rule("num_chains") & Interval(le=1024)
    assert chains.describe() == "an integer in [1, 1024]"
    with pytest.raises(TypeError):
        SGLDConfig.rule("num_chains") & SGLDConfig.rule("preconditioner")
