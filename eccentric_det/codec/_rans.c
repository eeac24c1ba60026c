/* The edge's rANS encoder: CompressAI's format (compressai.ans: 64-bit state, 32-bit words, 16-bit precision,
 * 4-bit bypass coding of out-of-range values), byte for byte, over int32 buffers (numpy arrays) instead of Python
 * lists, with every index checked. Decoding stays with the bounds-checked decoder (guarded_ans.py).
 *
 *   encode(symbols, indexes, cdfs, cdf_lengths, offsets, row) -> bytes
 *
 * symbols and indexes: int32, one per element; cdfs: int32 [num_cdfs, row] (C order), each CDF in its first
 * cdf_lengths[i] entries (0 ... 1 << 16, increasing); offsets: int32 [num_cdfs]. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>

#define PRECISION 16
#define BYPASS_BITS 4
#define BYPASS_MAX ((1 << BYPASS_BITS) - 1)
#define RANS_L (1ull << 31)

static void put(uint64_t *state, uint32_t **ptr, uint32_t start, uint32_t freq) {
    uint64_t x = *state;
    if (x >= ((RANS_L >> PRECISION) << 32) * freq) {
        *--*ptr = (uint32_t)x;
        x >>= 32;
    }
    *state = ((x / freq) << PRECISION) + (x % freq) + start;
}

static void put_bits(uint64_t *state, uint32_t **ptr, uint32_t value) { /* BYPASS_BITS raw bits */
    uint64_t x = *state;
    if (x >= ((RANS_L >> 16) << 32) * (1u << (16 - BYPASS_BITS))) {
        *--*ptr = (uint32_t)x;
        x >>= 32;
    }
    *state = (x << BYPASS_BITS) | value;
}

/* The bypass form of an out-of-range value (CompressAI's, in unsigned arithmetic: no overflow) and its nibbles. */
static uint32_t bypass_raw(int32_t value, int32_t max_value, int *nibbles) {
    uint32_t raw = value < 0 ? (uint32_t)(-2 * (int64_t)value - 1) : (uint32_t)(2 * ((int64_t)value - max_value));
    int n = 0;
    while (n < 8 && (raw >> (n * BYPASS_BITS)) != 0) ++n;
    *nibbles = n;
    return raw;
}

typedef struct {
    const int32_t *symbols, *indexes, *cdfs, *lengths, *offsets;
    Py_ssize_t n, num_cdfs, row;
} Job;

/* The first bad element's position and what is wrong with it, or -1. */
static Py_ssize_t check(const Job *j, const char **why, Py_ssize_t *words) {
    Py_ssize_t count = 2; /* the final state */
    for (Py_ssize_t c = 0; c < j->num_cdfs; ++c) {
        const int32_t *cdf = j->cdfs + c * j->row;
        int32_t len = j->lengths[c];
        if (len < 2 || len > j->row || cdf[0] != 0 || cdf[len - 1] != (1 << PRECISION)) {
            *why = "CDF";
            return c;
        }
        for (int32_t k = 0; k + 1 < len; ++k)
            if (cdf[k + 1] <= cdf[k]) {
                *why = "CDF";
                return c;
            }
    }
    for (Py_ssize_t i = 0; i < j->n; ++i) {
        int32_t c = j->indexes[i];
        if (c < 0 || c >= j->num_cdfs) {
            *why = "index";
            return i;
        }
        int32_t max_value = j->lengths[c] - 2;
        int64_t value = (int64_t)j->symbols[i] - j->offsets[c];
        count += 1;
        if (value != (int32_t)value) {
            *why = "symbol";
            return i;
        }
        if (value < 0 || value >= max_value) {
            int n;
            bypass_raw((int32_t)value, max_value, &n);
            count += n + n / BYPASS_MAX + 1;
        }
    }
    *words = count;
    return -1;
}

static void encode(const Job *j, uint32_t *end, uint32_t **out) {
    uint64_t state = RANS_L;
    uint32_t *ptr = end;
    for (Py_ssize_t i = j->n; i > 0; --i) {
        int32_t c = j->indexes[i - 1];
        const int32_t *cdf = j->cdfs + c * j->row;
        int32_t max_value = j->lengths[c] - 2;
        int32_t value = j->symbols[i - 1] - j->offsets[c];
        if (value < 0 || value >= max_value) {
            int n;
            uint32_t raw = bypass_raw(value, max_value, &n);
            for (int k = n - 1; k >= 0; --k) put_bits(&state, &ptr, (raw >> (k * BYPASS_BITS)) & BYPASS_MAX);
            int left = n;
            while (left >= BYPASS_MAX) {
                left -= BYPASS_MAX;
                put_bits(&state, &ptr, BYPASS_MAX);
            }
            put_bits(&state, &ptr, (uint32_t)left);
            value = max_value;
        }
        put(&state, &ptr, (uint32_t)cdf[value], (uint32_t)(cdf[value + 1] - cdf[value]));
    }
    ptr -= 2;
    ptr[0] = (uint32_t)state;
    ptr[1] = (uint32_t)(state >> 32);
    *out = ptr;
}

static PyObject *py_encode(PyObject *self, PyObject *args) {
    Py_buffer b[5];
    Py_ssize_t row;
    PyObject *result = NULL;
    memset(b, 0, sizeof(b));
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*n", &b[0], &b[1], &b[2], &b[3], &b[4], &row)) return NULL;
    const char *names[5] = {"symbols", "indexes", "cdfs", "cdf_lengths", "offsets"};
    for (int k = 0; k < 5; ++k)
        if (b[k].len % 4) {
            PyErr_Format(PyExc_ValueError, "rANS encode: %s must be int32 (a length in bytes that is a multiple "
                         "of 4), got %zd bytes", names[k], b[k].len);
            goto done;
        }
    Job j = {b[0].buf, b[1].buf, b[2].buf, b[3].buf, b[4].buf, b[0].len / 4, b[3].len / 4, row};
    if (b[1].len != b[0].len || b[4].len != b[3].len || row < 2 || b[2].len != 4 * row * j.num_cdfs) {
        PyErr_Format(PyExc_ValueError, "rANS encode: %zd symbols with %zd indexes, %zd CDFs of row %zd in %zd "
                     "int32s, %zd offsets: the counts do not match", j.n, b[1].len / 4, j.num_cdfs, row,
                     b[2].len / 4, b[4].len / 4);
        goto done;
    }
    const char *why = NULL;
    Py_ssize_t words = 0, bad = check(&j, &why, &words);
    if (bad >= 0) {
        PyErr_Format(PyExc_ValueError, why[0] == 'C' ? "rANS encode: CDF %zd is not a 16-bit CDF (0 first, 65536 at "
                     "its length, increasing, length 2..row)" : why[0] == 'i' ? "rANS encode: element %zd's CDF "
                     "index is out of range" : "rANS encode: element %zd's symbol minus its offset overflows int32",
                     bad);
        goto done;
    }
    uint32_t *buffer = malloc(words * sizeof(uint32_t)), *start = NULL;
    if (!buffer) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    encode(&j, buffer + words, &start);
    Py_END_ALLOW_THREADS
    result = PyBytes_FromStringAndSize((const char *)start, (buffer + words - start) * sizeof(uint32_t));
    free(buffer);
done:
    for (int k = 0; k < 5; ++k)
        if (b[k].obj) PyBuffer_Release(&b[k]);
    return result;
}

static PyMethodDef methods[] = {
    {"encode", py_encode, METH_VARARGS,
     "encode(symbols, indexes, cdfs, cdf_lengths, offsets, row) -> bytes: one rANS string in CompressAI's format "
     "(int32 buffers; cdfs [num_cdfs, row] in C order)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_rans", "The edge's rANS encoder (CompressAI's format).",
                                    -1, methods};

PyMODINIT_FUNC PyInit__rans(void) { return PyModule_Create(&module); }
