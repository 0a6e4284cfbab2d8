/*
 * SHA-256 of up to 16 equal-length messages at once, one message per 32-bit lane of AVX-512 registers.
 *
 * Why: EBS wants the SHA-256 of every 512 KiB block it stores, and hashing is most of what converting a disk costs.
 * One SHA-256 stream is a serial chain of rounds (even SHA-NI waits on it), but the blocks of a disk are
 * independent messages: computing 16 of them side by side keeps the vector units full. On the reference machine
 * this hashes about twice as fast per core as OpenSSL with SHA-NI, and about eight times as fast as OpenSSL told
 * not to use SHA-NI, as on AVX-512 Xeons that lack it (docs/engine.md). The arithmetic is FIPS 180-4 section 6.2,
 * lane by lane; the tests compare every result with hashlib.
 *
 * `supported()` says whether this CPU and OS can run it; the caller falls back to hashlib when not. The module
 * builds on any platform: elsewhere than x86-64 with GCC or Clang, `supported()` is simply false.
 * The GIL is released while hashing, so worker threads hash on every core.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define LANES 16
#define DIGEST_SIZE 32

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_LANES 1
#include <immintrin.h>

static const uint32_t ROUND_CONSTANTS[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static const uint32_t INITIAL_STATE[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                          0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

#define LANE_CODE __attribute__((target("avx512f,avx512bw")))
#define ROTATE_RIGHT _mm512_ror_epi32
/* ternarylogic truth tables: 0x96 is a ^ b ^ c, 0xCA is a ? b : c (Ch), 0xE8 is the majority of a, b, c (Maj). */
#define XOR3(a, b, c) _mm512_ternarylogic_epi32((a), (b), (c), 0x96)
#define CHOOSE(a, b, c) _mm512_ternarylogic_epi32((a), (b), (c), 0xCA)
#define MAJORITY(a, b, c) _mm512_ternarylogic_epi32((a), (b), (c), 0xE8)
#define ADD _mm512_add_epi32

/*
 * rows[l] holds the 16 words of lane l's 64-byte chunk; afterwards rows[w] holds word w of every lane.
 * Within each 128-bit quarter, two unpack steps gather one word of four rows; two quarter shuffles then bring
 * the four quarters of each word together.
 */
LANE_CODE static inline void transpose(__m512i rows[LANES]) {
    __m512i gathered[LANES];
    for (int group = 0; group < 4; group++) {
        __m512i *row = &rows[4 * group];
        __m512i low01 = _mm512_unpacklo_epi32(row[0], row[1]), high01 = _mm512_unpackhi_epi32(row[0], row[1]);
        __m512i low23 = _mm512_unpacklo_epi32(row[2], row[3]), high23 = _mm512_unpackhi_epi32(row[2], row[3]);
        gathered[4 * group + 0] = _mm512_unpacklo_epi64(low01, low23);
        gathered[4 * group + 1] = _mm512_unpackhi_epi64(low01, low23);
        gathered[4 * group + 2] = _mm512_unpacklo_epi64(high01, high23);
        gathered[4 * group + 3] = _mm512_unpackhi_epi64(high01, high23);
    }
    for (int word = 0; word < 4; word++) {
        __m512i rows0 = gathered[word], rows4 = gathered[4 + word];
        __m512i rows8 = gathered[8 + word], rows12 = gathered[12 + word];
        __m512i front_low = _mm512_shuffle_i32x4(rows0, rows4, 0x44);
        __m512i front_high = _mm512_shuffle_i32x4(rows0, rows4, 0xEE);
        __m512i back_low = _mm512_shuffle_i32x4(rows8, rows12, 0x44);
        __m512i back_high = _mm512_shuffle_i32x4(rows8, rows12, 0xEE);
        rows[word] = _mm512_shuffle_i32x4(front_low, back_low, 0x88);
        rows[4 + word] = _mm512_shuffle_i32x4(front_low, back_low, 0xDD);
        rows[8 + word] = _mm512_shuffle_i32x4(front_high, back_high, 0x88);
        rows[12 + word] = _mm512_shuffle_i32x4(front_high, back_high, 0xDD);
    }
}

/* Feed `chunk_count` consecutive 64-byte chunks of each lane's message (starting at messages[l]) into state. */
LANE_CODE static void compress(__m512i state[8], const uint8_t *const messages[LANES], size_t chunk_count) {
    const __m512i big_endian = _mm512_set4_epi32(0x0c0d0e0f, 0x08090a0b, 0x04050607, 0x00010203);
    for (size_t chunk = 0; chunk < chunk_count; chunk++) {
        __m512i schedule[16];
        for (int lane = 0; lane < LANES; lane++)
            schedule[lane] = _mm512_loadu_si512((const void *)(messages[lane] + 64 * chunk));
        transpose(schedule);
        for (int word = 0; word < 16; word++) schedule[word] = _mm512_shuffle_epi8(schedule[word], big_endian);

        __m512i a = state[0], b = state[1], c = state[2], d = state[3];
        __m512i e = state[4], f = state[5], g = state[6], h = state[7];
        /* Unrolled, the message schedule stays in registers: about 8 % faster than a loop on the reference machine. */
#pragma GCC unroll 64
        for (int round = 0; round < 64; round++) {
            __m512i word;
            if (round < 16) {
                word = schedule[round];
            } else {
                __m512i back15 = schedule[(round - 15) & 15], back2 = schedule[(round - 2) & 15];
                __m512i sigma0 = XOR3(ROTATE_RIGHT(back15, 7), ROTATE_RIGHT(back15, 18), _mm512_srli_epi32(back15, 3));
                __m512i sigma1 = XOR3(ROTATE_RIGHT(back2, 17), ROTATE_RIGHT(back2, 19), _mm512_srli_epi32(back2, 10));
                word = ADD(ADD(schedule[round & 15], sigma0), ADD(schedule[(round - 7) & 15], sigma1));
                schedule[round & 15] = word;
            }
            __m512i sum1 = XOR3(ROTATE_RIGHT(e, 6), ROTATE_RIGHT(e, 11), ROTATE_RIGHT(e, 25));
            __m512i constant = _mm512_set1_epi32((int)ROUND_CONSTANTS[round]);
            __m512i temporary1 = ADD(ADD(h, sum1), ADD(CHOOSE(e, f, g), ADD(word, constant)));
            __m512i sum0 = XOR3(ROTATE_RIGHT(a, 2), ROTATE_RIGHT(a, 13), ROTATE_RIGHT(a, 22));
            __m512i temporary2 = ADD(sum0, MAJORITY(a, b, c));
            h = g;
            g = f;
            f = e;
            e = ADD(d, temporary1);
            d = c;
            c = b;
            b = a;
            a = ADD(temporary1, temporary2);
        }
        state[0] = ADD(state[0], a);
        state[1] = ADD(state[1], b);
        state[2] = ADD(state[2], c);
        state[3] = ADD(state[3], d);
        state[4] = ADD(state[4], e);
        state[5] = ADD(state[5], f);
        state[6] = ADD(state[6], g);
        state[7] = ADD(state[7], h);
    }
}

/* The digests of 16 messages of `length` bytes each. */
LANE_CODE static void sha256_lanes(const uint8_t *const messages[LANES], size_t length,
                                   uint8_t digests[LANES][DIGEST_SIZE]) {
    __m512i state[8];
    for (int word = 0; word < 8; word++) state[word] = _mm512_set1_epi32((int)INITIAL_STATE[word]);
    size_t whole_chunks = length / 64, tail_length = length % 64;
    compress(state, messages, whole_chunks);

    /* The tail, the 0x80 marker and the bit length, in one chunk or two when the tail leaves no room. */
    uint8_t final_chunks[LANES][128];
    const uint8_t *finals[LANES];
    size_t final_count = tail_length < 56 ? 1 : 2;
    uint64_t bit_length = (uint64_t)length * 8;
    for (int lane = 0; lane < LANES; lane++) {
        uint8_t *final = final_chunks[lane];
        memset(final, 0, sizeof final_chunks[lane]);
        memcpy(final, messages[lane] + whole_chunks * 64, tail_length);
        final[tail_length] = 0x80;
        for (int byte = 0; byte < 8; byte++) final[final_count * 64 - 1 - byte] = (uint8_t)(bit_length >> (8 * byte));
        finals[lane] = final;
    }
    compress(state, finals, final_count);

    uint32_t words[8][LANES];
    for (int word = 0; word < 8; word++) _mm512_storeu_si512((void *)words[word], state[word]);
    for (int lane = 0; lane < LANES; lane++) {
        for (int word = 0; word < 8; word++) {
            uint32_t value = words[word][lane];
            digests[lane][4 * word + 0] = (uint8_t)(value >> 24);
            digests[lane][4 * word + 1] = (uint8_t)(value >> 16);
            digests[lane][4 * word + 2] = (uint8_t)(value >> 8);
            digests[lane][4 * word + 3] = (uint8_t)value;
        }
    }
}

static int cpu_has_lanes(void) {
    /* GCC and Clang check the CPUID bits and that the OS saves the AVX-512 registers (XGETBV). */
    static int answer = -1;
    if (answer < 0) {
        __builtin_cpu_init();
        answer = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    }
    return answer;
}
#else
#define HAVE_LANES 0
static int cpu_has_lanes(void) { return 0; }
#endif

static PyObject *supported(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    return PyBool_FromLong(cpu_has_lanes());
}

static PyObject *digests(PyObject *module, PyObject *argument) {
    (void)module;
    if (!cpu_has_lanes()) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this CPU cannot run the 16-lane SHA-256 (it needs AVX-512F and AVX-512BW)");
        return NULL;
    }
    PyObject *sequence = PySequence_Fast(argument, "digests() takes a sequence of bytes-like objects");
    if (sequence == NULL) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(sequence);
    if (count < 1 || count > LANES) {
        Py_DECREF(sequence);
        return PyErr_Format(PyExc_ValueError, "digests() takes 1 to %d messages, got %zd", LANES, count);
    }
    Py_buffer views[LANES];
    Py_ssize_t held = 0;
    PyObject *result = NULL;
    for (; held < count; held++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(sequence, held), &views[held], PyBUF_SIMPLE) < 0) goto done;
        if (views[held].len != views[0].len) {
            PyErr_Format(PyExc_ValueError, "digests() needs messages of one length: message %zd has %zd bytes, not %zd",
                         held, views[held].len, views[0].len);
            held++;
            goto done;
        }
    }
#if HAVE_LANES
    {
        /* Lanes without a message of their own repeat the first one; their digests are dropped. */
        const uint8_t *messages[LANES];
        for (int lane = 0; lane < LANES; lane++) messages[lane] = views[lane < count ? lane : 0].buf;
        uint8_t computed[LANES][DIGEST_SIZE];
        size_t length = (size_t)views[0].len;
        Py_BEGIN_ALLOW_THREADS
        sha256_lanes(messages, length, computed);
        Py_END_ALLOW_THREADS
        result = PyList_New(count);
        if (result == NULL) goto done;
        for (Py_ssize_t lane = 0; lane < count; lane++) {
            PyObject *digest = PyBytes_FromStringAndSize((const char *)computed[lane], DIGEST_SIZE);
            if (digest == NULL) {
                Py_CLEAR(result);
                goto done;
            }
            PyList_SET_ITEM(result, lane, digest);
        }
    }
#endif
done:
    for (Py_ssize_t index = 0; index < held; index++) PyBuffer_Release(&views[index]);
    Py_DECREF(sequence);
    return result;
}

static PyMethodDef methods[] = {
    {"supported", supported, METH_NOARGS, "supported() -> bool: whether this CPU can run digests()."},
    {"digests", digests, METH_O,
     "digests(messages) -> list[bytes]: the SHA-256 of 1 to 16 equal-length bytes-like messages, computed side by "
     "side (16 take about as long as 1)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef_Slot slots[] = {
#ifdef Py_mod_multiple_interpreters
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#ifdef Py_mod_gil
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_definition = {
    PyModuleDef_HEAD_INIT, "_multibuffer_sha256",
    "SHA-256 of up to 16 equal-length messages at once, with AVX-512.", 0, methods, slots, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__multibuffer_sha256(void) { return PyModuleDef_Init(&module_definition); }
