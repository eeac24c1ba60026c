"""Shapes and sizes a codec's payload must have, derived from the image size alone (never read from a header)."""
from .payload import FIELD_RATE, PayloadError

RATE_STEPS = 32  # FIELD_RATE: the rate in 1/RATE_STEPS of a level (eccentric_det.codec.coding.rate_field)


def rans_string_bounds(num_symbols):
    """(fewest, most) bytes of a rANS string that CompressAI's encoder writes for ``num_symbols``
    symbols: the 8-byte final state, and at most one 32-bit word per symbol (its output buffer)."""
    return 8, 4 * max(num_symbols, 2)


def latent_shape(config, feature_hw):
    """(h, w) of the first latent a codec of ``config`` codes for a split feature of ``feature_hw``."""
    ds = config["downsample"] if config["name"] != "passthrough" else 1
    return tuple(-(-s // ds) for s in feature_hw)


def string_bounds(config, feature_hw, cells=None):
    """(fewest, most) bytes of each string a codec of ``config`` writes for a feature of ``feature_hw``
    (``cells``: the numbers of y and z cells a region payload codes; default all)."""
    if config["name"] == "passthrough":
        return [(4 * config["in_channels"] * feature_hw[0] * feature_hw[1],) * 2]
    y_hw, n = latent_shape(config, feature_hw), config["latent_channels"]
    z_hw = hyper_shape(y_hw)
    y_cells, z_cells = cells or (y_hw[0] * y_hw[1], z_hw[0] * z_hw[1])
    bounds = [rans_string_bounds(n * y_cells)]
    if config.get("hyper"):
        bounds.append(rans_string_bounds(n * z_cells))
    return bounds


def check_strings(config, strings, feature_hw, cells=None):
    """Raise :class:`PayloadError` unless ``strings`` could code a feature of ``feature_hw`` with a codec of
    ``config``: their count, and each one's length against the symbols it codes (shapes derived here,
    never read from a header; ``cells`` as in :func:`string_bounds`)."""
    bounds = string_bounds(config, feature_hw, cells)
    if len(strings) != len(bounds):
        raise PayloadError(f"payload holds {len(strings)} strings, this codec ({config['name']}) writes {len(bounds)}")
    for i, (s, (lo, hi)) in enumerate(zip(strings, bounds)):
        if not lo <= len(s) <= hi:
            raise PayloadError(f"payload string {i} holds {len(s)} bytes; for a feature of {tuple(feature_hw)} "
                               f"this codec writes {lo}..{hi}")


def hyper_shape(hw):
    """(h, w) of a hyperprior's z for a latent y of ``hw`` (two stride-2 convolutions)."""
    return tuple(-(-(-(-s // 2)) // 2) for s in hw)


def read_rate(fields, levels):
    """The rate (0..``levels`` - 1) a variable-rate codec's payload ``fields`` name; :class:`PayloadError` when
    FIELD_RATE is missing, not one byte, or beyond the codec's levels."""
    value = fields.get(FIELD_RATE)
    if value is None or len(value) != 1:
        raise PayloadError(f"a variable-rate payload carries its rate in one byte (field {FIELD_RATE}), got "
                           f"{'none' if value is None else f'{len(value)} bytes'}")
    rate = value[0] / RATE_STEPS
    if rate > levels - 1:
        raise PayloadError(f"payload rate {rate} is beyond this codec's levels 0..{levels - 1}")
    return rate


def check_fields(config, fields):
    """Raise :class:`PayloadError` unless the codec's own fields hold what this codec could have written."""
    if config.get("rate_levels", 1) > 1:
        read_rate(fields, config["rate_levels"])
