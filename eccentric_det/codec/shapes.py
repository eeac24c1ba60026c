"""Shapes and sizes a codec's payload must have, derived from the image size alone (never read from a header)."""
from .payload import PayloadError


def rans_string_bounds(num_symbols):
    """(fewest, most) bytes of a rANS string that CompressAI's encoder writes for ``num_symbols``
    symbols: the 8-byte final state, and at most one 32-bit word per symbol (its output buffer)."""
    return 8, 4 * max(num_symbols, 2)


def latent_shape(config, feature_hw):
    """(h, w) of the first latent a codec of ``config`` codes for a split feature of ``feature_hw``."""
    ds = config["downsample"] if config["name"] != "passthrough" else 1
    return tuple(-(-s // ds) for s in feature_hw)


def check_strings(config, strings, feature_hw):
    """Raise :class:`PayloadError` unless ``strings`` could code a feature of ``feature_hw`` with a codec of
    ``config``: their count, and each one's length against the symbols it codes (shapes derived here,
    never read from a header)."""
    name = config["name"]
    expected = 2 if name == "hyperprior" else 1
    if len(strings) != expected:
        raise PayloadError(f"payload holds {len(strings)} strings, this codec ({name}) writes {expected}")
    if name == "passthrough":
        bounds = [(4 * config["in_channels"] * feature_hw[0] * feature_hw[1],) * 2]
    else:
        y_hw, n = latent_shape(config, feature_hw), config["latent_channels"]
        bounds = [rans_string_bounds(n * y_hw[0] * y_hw[1])]
        if name == "hyperprior":
            z_hw = hyper_shape(y_hw)
            bounds.append(rans_string_bounds(n * z_hw[0] * z_hw[1]))
    for i, (s, (lo, hi)) in enumerate(zip(strings, bounds)):
        if not lo <= len(s) <= hi:
            raise PayloadError(f"payload string {i} holds {len(s)} bytes; for a feature of {tuple(feature_hw)} "
                               f"this codec writes {lo}..{hi}")


def hyper_shape(hw):
    """(h, w) of a hyperprior's z for a latent y of ``hw`` (two stride-2 convolutions)."""
    return tuple(-(-(-(-s // 2)) // 2) for s in hw)
