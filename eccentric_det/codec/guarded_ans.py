"""A bounds-checked decoder for CompressAI's rANS bit strings, for whatever crosses the network.

CompressAI's native ``RansDecoder`` trusts its caller: asked for more symbols than a string holds, or
fed a crafted string, it reads past the end of its buffer (a segmentation fault, not an exception).
This decoder reads the same format (``compressai.ans``: 64-bit rANS state, 32-bit words, 16-bit
precision, 4-bit bypass coding of out-of-range values) with every read checked, so no bytes can drive
it out of bounds. It is also strict: a string must decode to exactly the symbols asked for, consume
every word, and end in the encoder's initial state, which rejects nearly all strings that CompressAI's
encoder did not write. The edge keeps CompressAI's encoder; only decoding goes through here.

Compiled with numba on first use (cached next to this file when it is writable).
"""
import numpy as np
import torch
from numba import njit

_PRECISION = 16
_BYPASS_BITS = 4
_BYPASS_MAX = (1 << _BYPASS_BITS) - 1
# A bypass-coded value is an int32: CompressAI's encoder never writes more than 8 nibbles for one.
_MAX_BYPASS_NIBBLES = 8
_RANS_L = 1 << 31

ERRORS = {
    1: "it is shorter than the 8 bytes of a coder state",
    2: "its length is not a whole number of 32-bit words",
    3: "it ends before all of its symbols are decoded",
    4: "it codes an out-of-range value longer than 32 bits",
    5: "it decodes to a state outside the coder's range",
    6: "it holds words after its last symbol",
    7: "it does not end in the encoder's initial state",
}


class EntropyDecodeError(ValueError):
    """A string that is not one CompressAI's rANS encoder could have written for these symbols."""


@njit(cache=True, nogil=True)
def _renormalize(words, x, pos):  # pragma: no cover (compiled)
    """Refill the state from the next word when it fell below the coder's range; pos -1: no word left."""
    if x < np.uint64(_RANS_L):
        if pos >= words.shape[0]:
            return x, -1
        x = (x << np.uint64(32)) | np.uint64(words[pos])
        pos += 1
    return x, pos


@njit(cache=True, nogil=True)
def _decode(words, indexes, cdfs, cdf_lengths, offsets, out):  # pragma: no cover (compiled)
    if words.shape[0] < 2:
        return 1
    x = np.uint64(words[0]) | (np.uint64(words[1]) << np.uint64(32))
    pos = 2
    mask = np.uint64((1 << _PRECISION) - 1)
    nibble = np.uint64(_BYPASS_MAX)
    for i in range(indexes.shape[0]):
        idx = indexes[i]
        max_value = cdf_lengths[idx] - 2
        cum = np.int64(x & mask)
        s = -1
        for j in range(cdf_lengths[idx]):
            if cdfs[idx, j] > cum:
                s = j - 1
                break
        if s < 0 or s > max_value:
            return 5
        start = np.uint64(cdfs[idx, s])
        freq = np.uint64(cdfs[idx, s + 1] - cdfs[idx, s])
        x, pos = _renormalize(words, freq * (x >> np.uint64(_PRECISION)) + (x & mask) - start, pos)
        if pos < 0:
            return 3
        value = s
        if value == max_value:  # bypass mode: a nibble count (15 = "and more"), then the nibbles
            n_bypass, val = 0, _BYPASS_MAX
            while val == _BYPASS_MAX:
                val = np.int64(x & nibble)
                x, pos = _renormalize(words, x >> np.uint64(_BYPASS_BITS), pos)
                if pos < 0:
                    return 3
                n_bypass += val
                if n_bypass > _MAX_BYPASS_NIBBLES:
                    return 4
            raw = np.int64(0)
            for j in range(n_bypass):
                raw |= np.int64(x & nibble) << (j * _BYPASS_BITS)
                x, pos = _renormalize(words, x >> np.uint64(_BYPASS_BITS), pos)
                if pos < 0:
                    return 3
            value = -(raw >> 1) - 1 if raw & 1 else (raw >> 1) + max_value
        out[i] = value + offsets[idx]
    if pos != words.shape[0]:
        return 6
    if x != np.uint64(_RANS_L):
        return 7
    return 0


def decode_symbols(string, indexes, cdfs, cdf_lengths, offsets):
    """Symbols (int32 array, one per entry of ``indexes``) of one rANS ``string``; ``cdfs`` [K, L],
    ``cdf_lengths`` [K] and ``offsets`` [K] are an entropy model's tables, ``indexes`` pick a row per
    symbol. Raises :class:`EntropyDecodeError` for any string the encoder could not have written."""
    if len(string) < 8:
        raise EntropyDecodeError(f"entropy-coded string of {len(string)} bytes is corrupt: {ERRORS[1]}")
    if len(string) % 4:
        raise EntropyDecodeError(f"entropy-coded string of {len(string)} bytes is corrupt: {ERRORS[2]}")
    indexes = np.ascontiguousarray(indexes, dtype=np.int32).reshape(-1)
    if indexes.size and (indexes.min() < 0 or indexes.max() >= len(cdf_lengths)):
        raise ValueError("CDF indexes out of range of the entropy model's tables")
    out = np.empty(indexes.size, dtype=np.int32)
    words = np.frombuffer(bytes(string), dtype="<u4")
    code = _decode(words, indexes, cdfs, cdf_lengths, offsets, out)
    if code:
        raise EntropyDecodeError(f"entropy-coded string of {len(string)} bytes is corrupt: {ERRORS[code]}")
    return out


def tables(entropy_model):
    """(cdfs, cdf_lengths, offsets) of a CompressAI entropy model after ``update()``, as int32 arrays."""
    return tuple(np.ascontiguousarray(getattr(entropy_model, name).cpu().numpy(), dtype=np.int32)
                 for name in ("_quantized_cdf", "_cdf_length", "_offset"))


def decompress(entropy_model, strings, indexes, means=None):
    """What ``entropy_model.decompress`` returns (dequantised float tensor shaped like ``indexes``,
    [N, C, H, W]), decoded with :func:`decode_symbols`; ``means`` as CompressAI's."""
    cdfs, lengths, offsets = tables(entropy_model)
    idx = indexes.cpu().numpy()
    symbols = np.stack([decode_symbols(s, idx[i], cdfs, lengths, offsets).reshape(idx.shape[1:])
                        for i, s in enumerate(strings)])
    return entropy_model.dequantize(torch.from_numpy(symbols), means, torch.float)


def warm_up():
    """Compile (or load from the cache) the decoder now, so that the first payload does not wait for it."""
    one = np.zeros(1, np.int32)
    _decode(np.zeros(2, np.uint32), one, np.zeros((1, 2), np.int32), one + 2, one, one)
