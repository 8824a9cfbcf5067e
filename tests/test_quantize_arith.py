"""The integer arithmetic every quantised decoder uses: multipliers, requantisation, tables, recipes."""
import numpy as np
import pytest

from edgebci.errors import ConfigError, UnsupportedOpError
from edgebci.quantize.arith import Multiplier, build_table, requantize
from edgebci.quantize.recipe import Recipe, known_recipes


@pytest.mark.parametrize("ratio", [0.25, 2.0 ** -20, 1.0, 8.0])
def test_power_of_two_ratios_are_pure_shifts(ratio):
    m = Multiplier.from_real(ratio)
    assert m.is_shift and m.real() == ratio


def test_multiplier_is_a_31_bit_mantissa_and_a_shift():
    rng = np.random.default_rng(0)
    ratios = np.exp(rng.uniform(np.log(1e-6), np.log(100.0), 500))
    m = Multiplier.from_real(ratios)
    assert not m.is_shift
    assert np.all((m.m0 >= 2 ** 30) & (m.m0 < 2 ** 31)) and np.all(m.n >= 1)
    assert np.max(np.abs(m.real() / ratios - 1)) < 2 ** -30


def test_requantize_rounds_half_to_even_and_clamps():
    acc = np.array([-10, -6, -2, 2, 6, 10, 1000, -1000], np.int64)
    out = requantize(acc, Multiplier.from_real(0.25), None, -128, 127)          # shift by 2
    assert out.tolist() == [-2, -2, 0, 0, 2, 2, 127, -128]                      # as torch.round: -2.5 -> -2, 1.5 -> 2
    assert out.tolist() == np.clip(np.round(acc * 0.25), -128, 127).astype(int).tolist()
    general = requantize(acc, Multiplier.from_real(0.3), None, -128, 127)
    assert general.tolist() == np.clip(np.round(acc * 0.3), -128, 127).astype(int).tolist()


def test_requantize_matches_float_within_half_a_step():
    rng = np.random.default_rng(1)
    acc = rng.integers(-2 ** 24, 2 ** 24, 10_000)
    for ratio in (1.7e-4, 3.3e-3, 0.61):
        got = requantize(acc, Multiplier.from_real(ratio), None, -2 ** 31, 2 ** 31 - 1)
        assert np.max(np.abs(got - acc * ratio)) <= 0.5 + 1e-6


def test_per_channel_multipliers_broadcast_along_the_channel_axis():
    acc = np.full((1, 3, 4), 100, np.int64)
    out = requantize(acc, Multiplier.from_real(np.array([0.5, 0.25, 0.125])), 1, -128, 127)
    assert out[0, :, 0].tolist() == [50, 25, 12]                # 12.5 -> 12


def test_a_shift_that_would_overflow_int32_is_refused():
    with pytest.raises(UnsupportedOpError, match="overflows int32"):
        requantize(np.array([2 ** 29]), Multiplier.from_real(4.0), None, -2 ** 31, 2 ** 31 - 1)


def test_bad_ratio_names_the_value():
    with pytest.raises(UnsupportedOpError, match="must be finite and > 0"):
        Multiplier.from_real(0.0, "conv1")


def test_table_is_the_function_at_every_int8_code():
    table = build_table(lambda x: np.maximum(x, 0.0), 0.1, 0.05)
    assert table.dtype == np.int8 and table.shape == (256,)
    assert table[128 + 10] == 20 and table[128 - 10] == 0 and table[255] == 127     # clamped at 127
    with pytest.raises(UnsupportedOpError, match="not finite"):
        build_table(np.log, 1.0, 1.0)            # log(0) at code 0: clamp before quantising


def test_bundled_recipes_load():
    assert {"int8", "int8-pow2", "w4a8"} <= set(known_recipes())
    assert Recipe.from_name("int8-pow2").pow2
    assert Recipe.from_name("w4a8").weight_bits == 4
    assert Recipe.from_name("int8").to_dict() == Recipe.from_dict(Recipe.from_name("int8").to_dict()).to_dict()


def test_unknown_recipe_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known: int8, int8-pow2, w4a8"):
        Recipe.from_name("int7")


def test_recipe_fields_are_checked(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[weights]\nbits = 8\nscale = "log"\n[activations]\nbits = 8\n')
    with pytest.raises(ConfigError, match="weights.scale must be one of"):
        Recipe.from_name(bad)
    bad.write_text('name = "bad"\n[weights]\nbits = 8\n[activations]\nbits = 16\n')
    with pytest.raises(ConfigError, match="activations.bits must be 8"):
        Recipe.from_name(bad)
