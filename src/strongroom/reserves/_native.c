/*
 * strongroom.reserves._native: the proof-of-reserves hot loops (POR_FORMATS §1) in C.
 *
 * Every function here has a pure-Python reference in merkle.py (the *_py functions) and must
 * give the same bytes; tests/unit/reserves/test_native.py holds them equal, on both SHA-256
 * back ends below. The derivations are documented in merkle.py's module docstring:
 *
 *   user_salt = HMAC(secret, "strongroom-por-v1/salt" ‖ account_id)
 *   user_tag  = H("strongroom-por-v1/user" ‖ 0x00 ‖ user_salt ‖ account_id)
 *   PRF_x     = AES-256 under HMAC(secret, "strongroom-por-v1/prf/" ‖ x), x = split, order, pad
 *   nonce     = tag[0:12] ^ tag[12:24] ^ (tag[24:32] ‖ 0x00000000)
 *   split     = 128-bit words, word j = PRF_split(nonce(tag) ‖ u32be(j)); per asset with balance
 *               b > 0, k - 1 draws uniform in 0..b by rejection, sorted; the pieces are the gaps
 *               0 → c1 → … → b
 *   order key = PRF_order(nonce(tag) ‖ u32be(piece))  (16 bytes)
 *   pad tag   = PRF_pad(u64be(p) ‖ u32be(0) ‖ u32be(0)) ‖ PRF_pad(u64be(p) ‖ u32be(0) ‖ u32be(1))
 *   leaf      = H(0x00 ‖ tag ‖ u32be(piece) ‖ enc(B))
 *   node      = H(0x01 ‖ left record ‖ right record), B = B_left + B_right (u128, no overflow)
 *
 * SHA-256. The messages are short (1 to 4 blocks) and independent, so they are hashed as jobs,
 * two at a time: the SHA-256 padding is done here and the block function is either
 *   - "shani": x86 SHA extensions, two messages interleaved. One message at a time is bound by
 *     the latency of SHA256RNDS2; two independent ones fill the pipeline (on this project's AMD
 *     EPYC: 20 ns per block and message instead of 40). Used where CPUID reports SHA, SSSE3
 *     and SSE4.1.
 *   - "openssl": libcrypto's own block function (SHA256_Transform), one block at a time, which
 *     picks the best code for the CPU itself. Used everywhere else, and selectable for tests.
 * HMAC keys are prepared once per call (the states after the key blocks and the domains).
 * AES-256 (the PRFs) is libcrypto's EVP AES-256-ECB over counter blocks, i.e. the keystream of
 * AES-CTR with a 96-bit nonce; EVP uses AES-NI where the CPU has it, and every batch of blocks
 * is one EVP call.
 * Every loop runs with the GIL released; the inputs are read through the buffer protocol and the
 * outputs are bytes objects allocated before the loop, or (the *_into functions) writable
 * buffers the caller reuses, which spares a page fault per 4 KiB of output.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* SHA256_Transform is deprecated in OpenSSL 3 (in favour of EVP, whose per-call fetch and
 * context allocation would cost more than the block itself) but still built by default. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/sha.h>

#if defined(OPENSSL_NO_DEPRECATED_3_0)
#error "this OpenSSL was built without SHA256_Transform; the pure-Python path is used"
#endif
#if !defined(__SIZEOF_INT128__)
#error "unsigned __int128 is needed; the pure-Python path is used"
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_SHANI 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define HAVE_SHANI 0
#endif

typedef unsigned __int128 u128;

#define HASH_BYTES 32
#define AMOUNT_BYTES 16
#define KEY_BYTES 16
#define AES_BLOCK 16
#define NONCE_BYTES 12
#define SECRET_BYTES 32
#define MAX_PIECES 16
#define MAX_ASSETS 256
#define MAX_DRAW_ATTEMPTS 512
#define MAX_WIDTH (AMOUNT_BYTES * MAX_ASSETS)
#define BLOCK 64
#define MAX_BLOCKS 16 /* longer messages are hashed one block at a time (hash_stream) */
#define GROUP 64      /* accounts whose jobs are batched together */
#ifndef GATHER_AHEAD
#define GATHER_AHEAD 8 /* leaves a gather prefetches ahead (their data misses the cache) */
#endif

static const char SALT_DOMAIN[] = "strongroom-por-v1/salt";
static const char USER_DOMAIN[] = "strongroom-por-v1/user";
static const char PRF_SPLIT_DOMAIN[] = "strongroom-por-v1/prf/split";
static const char PRF_ORDER_DOMAIN[] = "strongroom-por-v1/prf/order";
static const char PRF_PAD_DOMAIN[] = "strongroom-por-v1/prf/pad";

/* ------------------------------------------------------------------------------------------ */
/* Byte order */

static inline uint64_t load_u64(const unsigned char *p) {
    uint64_t value;
    memcpy(&value, p, sizeof value);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    value = __builtin_bswap64(value);
#endif
    return value;
}

static inline void store_u64(unsigned char *p, uint64_t value) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    value = __builtin_bswap64(value);
#endif
    memcpy(p, &value, sizeof value);
}

static inline u128 load_u128(const unsigned char *p) {
    return ((u128)load_u64(p) << 64) | load_u64(p + 8);
}

static inline void store_u128(unsigned char *p, u128 value) {
    store_u64(p, (uint64_t)(value >> 64));
    store_u64(p + 8, (uint64_t)value);
}

static inline void store_u32(unsigned char *p, uint32_t value) {
    p[0] = (unsigned char)(value >> 24);
    p[1] = (unsigned char)(value >> 16);
    p[2] = (unsigned char)(value >> 8);
    p[3] = (unsigned char)value;
}

/* ------------------------------------------------------------------------------------------ */
/* Block functions: h = compress(h, blocks), for one message or two at once */

typedef void (*compress1_fn)(uint32_t h[8], const unsigned char *blocks, size_t count);
typedef void (*compress2_fn)(uint32_t h0[8], uint32_t h1[8], const unsigned char *blocks0,
                             const unsigned char *blocks1, size_t count);

static void compress1_openssl(uint32_t h[8], const unsigned char *blocks, size_t count) {
    SHA256_CTX context; /* only its state words are used */
    for (int i = 0; i < 8; i++) {
        context.h[i] = h[i];
    }
    for (size_t n = 0; n < count; n++) {
        SHA256_Transform(&context, blocks + BLOCK * n);
    }
    for (int i = 0; i < 8; i++) {
        h[i] = context.h[i];
    }
}

static void compress2_openssl(uint32_t h0[8], uint32_t h1[8], const unsigned char *blocks0,
                              const unsigned char *blocks1, size_t count) {
    compress1_openssl(h0, blocks0, count);
    compress1_openssl(h1, blocks1, count);
}

#if HAVE_SHANI
static const uint32_t ROUND_CONSTANTS[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
    0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
    0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
    0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
    0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
    0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
    0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
    0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
};

#define SHANI_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* ``lanes`` (1 or 2) messages of ``count`` blocks each; the two lanes' instructions are
 * interleaved so that one's SHA256RNDS2 runs while the other's waits. Always inlined with a
 * constant ``lanes``, so every loop over the lanes and the 16 groups of 4 rounds unrolls, and
 * the message words stay in registers. */
static inline __attribute__((always_inline)) SHANI_TARGET void
compress_shani(int lanes, uint32_t *h[2], const unsigned char *blocks[2], size_t count) {
    const __m128i byte_swap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i abef[2], cdgh[2], abef_saved[2], cdgh_saved[2], words[2][4], message[2];
    for (int l = 0; l < lanes; l++) {
        __m128i dcba = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[l][0]), 0xB1);
        __m128i efgh = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[l][4]), 0x1B);
        abef[l] = _mm_alignr_epi8(dcba, efgh, 8);
        cdgh[l] = _mm_blend_epi16(efgh, dcba, 0xF0);
    }
    for (size_t n = 0; n < count; n++) {
        for (int l = 0; l < lanes; l++) {
            abef_saved[l] = abef[l];
            cdgh_saved[l] = cdgh[l];
        }
#if defined(__clang__)
#pragma unroll
#else
#pragma GCC unroll 16
#endif
        for (int g = 0; g < 16; g++) {
            __m128i k = _mm_loadu_si128((const __m128i *)&ROUND_CONSTANTS[4 * g]);
            for (int l = 0; l < lanes; l++) {
                if (g < 4) {
                    const __m128i *data = (const __m128i *)(blocks[l] + BLOCK * n + 16 * g);
                    words[l][g] = _mm_shuffle_epi8(_mm_loadu_si128(data), byte_swap);
                }
                message[l] = _mm_add_epi32(words[l][g & 3], k);
                cdgh[l] = _mm_sha256rnds2_epu32(cdgh[l], abef[l], message[l]);
            }
            for (int l = 0; l < lanes; l++) {
                if (g >= 3 && g <= 14) {
                    __m128i carry = _mm_alignr_epi8(words[l][g & 3], words[l][(g - 1) & 3], 4);
                    __m128i next = _mm_add_epi32(words[l][(g + 1) & 3], carry);
                    words[l][(g + 1) & 3] = _mm_sha256msg2_epu32(next, words[l][g & 3]);
                }
                message[l] = _mm_shuffle_epi32(message[l], 0x0E);
                abef[l] = _mm_sha256rnds2_epu32(abef[l], cdgh[l], message[l]);
                if (g >= 1 && g <= 12) {
                    words[l][(g - 1) & 3] =
                        _mm_sha256msg1_epu32(words[l][(g - 1) & 3], words[l][g & 3]);
                }
            }
        }
        for (int l = 0; l < lanes; l++) {
            abef[l] = _mm_add_epi32(abef[l], abef_saved[l]);
            cdgh[l] = _mm_add_epi32(cdgh[l], cdgh_saved[l]);
        }
    }
    for (int l = 0; l < lanes; l++) {
        __m128i feba = _mm_shuffle_epi32(abef[l], 0x1B);
        __m128i dchg = _mm_shuffle_epi32(cdgh[l], 0xB1);
        _mm_storeu_si128((__m128i *)&h[l][0], _mm_blend_epi16(feba, dchg, 0xF0));
        _mm_storeu_si128((__m128i *)&h[l][4], _mm_alignr_epi8(dchg, feba, 8));
    }
}

static SHANI_TARGET void compress1_shani(uint32_t h[8], const unsigned char *blocks,
                                         size_t count) {
    uint32_t *states[2] = {h, h};
    const unsigned char *data[2] = {blocks, blocks};
    compress_shani(1, states, data, count);
}

static SHANI_TARGET void compress2_shani(uint32_t h0[8], uint32_t h1[8],
                                         const unsigned char *blocks0,
                                         const unsigned char *blocks1, size_t count) {
    uint32_t *states[2] = {h0, h1};
    const unsigned char *data[2] = {blocks0, blocks1};
    compress_shani(2, states, data, count);
}

static int cpu_has_shani(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 9)) || !(c & (1u << 19))) {
        return 0; /* SSSE3, SSE4.1 */
    }
    if (__get_cpuid_max(0, NULL) < 7) {
        return 0;
    }
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 29) & 1; /* SHA */
}
#endif

/* The back end, chosen when the module is imported (set_backend changes it, for tests). */
static compress1_fn compress1 = compress1_openssl;
static compress2_fn compress2 = compress2_openssl;
static const char *backend_name = "openssl";

/* ------------------------------------------------------------------------------------------ */
/* Messages as jobs */

static const uint32_t IV[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/* The state after some leading bytes of a message: ``compressed`` bytes in ``h`` (a multiple of
 * 64), then ``tail`` (under 64 bytes) not yet compressed. */
typedef struct {
    uint32_t h[8];
    uint64_t compressed;
    size_t tail_length;
    unsigned char tail[BLOCK];
} prefix_t;

typedef struct {
    const unsigned char *data;
    size_t length;
} segment;

/* One message: prefix ‖ parts[0] ‖ … ; its digest goes to ``out`` (32 bytes). */
typedef struct {
    const prefix_t *prefix;
    segment parts[3];
    int n_parts;
    unsigned char *out;
} job_t;

static void prefix_init(prefix_t *prefix, const void *bytes, size_t length) {
    memcpy(prefix->h, IV, sizeof IV);
    prefix->compressed = 0;
    prefix->tail_length = 0;
    const unsigned char *data = bytes;
    while (length >= BLOCK) {
        compress1(prefix->h, data, 1);
        prefix->compressed += BLOCK;
        data += BLOCK;
        length -= BLOCK;
    }
    memcpy(prefix->tail, data, length);
    prefix->tail_length = length;
}

/* ``from`` followed by ``length`` more bytes, which must still fit in the tail (the domains are
 * at most 23 bytes and follow a whole key block). */
static void prefix_extend(prefix_t *out, const prefix_t *from, const void *bytes, size_t length) {
    *out = *from;
    memcpy(out->tail + out->tail_length, bytes, length);
    out->tail_length += length;
}

static void store_digest(unsigned char *out, const uint32_t h[8]) {
    for (int i = 0; i < 8; i++) {
        store_u32(out + 4 * i, h[i]);
    }
}

static size_t job_length(const job_t *job) {
    size_t length = job->prefix->tail_length;
    for (int i = 0; i < job->n_parts; i++) {
        length += job->parts[i].length;
    }
    return length;
}

/* The job's remaining blocks, padded, in ``buffer``; 0 when they would not fit. */
static size_t pad_job(const job_t *job, unsigned char buffer[MAX_BLOCKS * BLOCK]) {
    size_t length = job_length(job);
    size_t blocks = (length + 9 + BLOCK - 1) / BLOCK;
    if (blocks > MAX_BLOCKS) {
        return 0;
    }
    size_t at = job->prefix->tail_length;
    memcpy(buffer, job->prefix->tail, at);
    for (int i = 0; i < job->n_parts; i++) {
        memcpy(buffer + at, job->parts[i].data, job->parts[i].length);
        at += job->parts[i].length;
    }
    buffer[at++] = 0x80;
    memset(buffer + at, 0, blocks * BLOCK - 8 - at);
    store_u64(buffer + blocks * BLOCK - 8, (job->prefix->compressed + length) * 8);
    return blocks;
}

/* Any length, one block at a time. */
static void hash_stream(const job_t *job) {
    uint32_t h[8];
    unsigned char block[BLOCK];
    memcpy(h, job->prefix->h, sizeof h);
    size_t fill = job->prefix->tail_length;
    memcpy(block, job->prefix->tail, fill);
    uint64_t total = job->prefix->compressed + fill;
    for (int i = 0; i < job->n_parts; i++) {
        const unsigned char *data = job->parts[i].data;
        size_t length = job->parts[i].length;
        total += length;
        while (length > 0) {
            size_t take = BLOCK - fill < length ? BLOCK - fill : length;
            memcpy(block + fill, data, take);
            fill += take;
            data += take;
            length -= take;
            if (fill == BLOCK) {
                compress1(h, block, 1);
                fill = 0;
            }
        }
    }
    block[fill++] = 0x80;
    if (fill > BLOCK - 8) {
        memset(block + fill, 0, BLOCK - fill);
        compress1(h, block, 1);
        fill = 0;
    }
    memset(block + fill, 0, BLOCK - 8 - fill);
    store_u64(block + BLOCK - 8, total * 8);
    compress1(h, block, 1);
    store_digest(job->out, h);
}

static void hash_one(const job_t *job) {
    unsigned char buffer[MAX_BLOCKS * BLOCK];
    size_t blocks = pad_job(job, buffer);
    if (blocks == 0) {
        hash_stream(job);
        return;
    }
    uint32_t h[8];
    memcpy(h, job->prefix->h, sizeof h);
    compress1(h, buffer, blocks);
    store_digest(job->out, h);
}

static void hash_pair(const job_t *first, const job_t *second) {
    unsigned char buffers[2][MAX_BLOCKS * BLOCK];
    size_t blocks0 = pad_job(first, buffers[0]);
    size_t blocks1 = blocks0 ? pad_job(second, buffers[1]) : 0;
    if (blocks0 == 0 || blocks1 == 0) {
        hash_one(first);
        hash_one(second);
        return;
    }
    uint32_t h0[8], h1[8];
    memcpy(h0, first->prefix->h, sizeof h0);
    memcpy(h1, second->prefix->h, sizeof h1);
    size_t common = blocks0 < blocks1 ? blocks0 : blocks1;
    compress2(h0, h1, buffers[0], buffers[1], common);
    if (blocks0 > common) {
        compress1(h0, buffers[0] + BLOCK * common, blocks0 - common);
    }
    if (blocks1 > common) {
        compress1(h1, buffers[1] + BLOCK * common, blocks1 - common);
    }
    store_digest(first->out, h0);
    store_digest(second->out, h1);
}

static void hash_jobs(const job_t *jobs, size_t count) {
    size_t n = 0;
    for (; n + 1 < count; n += 2) {
        hash_pair(&jobs[n], &jobs[n + 1]);
    }
    if (n < count) {
        hash_one(&jobs[n]);
    }
}

static inline job_t job1(const prefix_t *prefix, const void *data, size_t length,
                         unsigned char *out) {
    job_t job = {prefix, {{data, length}, {NULL, 0}, {NULL, 0}}, 1, out};
    return job;
}

static inline job_t job2(const prefix_t *prefix, const void *data0, size_t length0,
                         const void *data1, size_t length1, unsigned char *out) {
    job_t job = {prefix, {{data0, length0}, {data1, length1}, {NULL, 0}}, 2, out};
    return job;
}

/* ------------------------------------------------------------------------------------------ */
/* HMAC-SHA256 under the audit secret, with the keyed states computed once (as AuditKey does) */

typedef struct {
    prefix_t outer; /* after (secret ‖ 0…) ^ 0x5c */
    prefix_t salt;  /* after (secret ‖ 0…) ^ 0x36, then SALT_DOMAIN */
    prefix_t user;  /* USER_DOMAIN ‖ 0x00 (a plain hash, not keyed) */
    EVP_CIPHER_CTX *split_prf; /* AES-256-ECB under HMAC(secret, PRF_SPLIT_DOMAIN) */
    EVP_CIPHER_CTX *order_prf; /* … PRF_ORDER_DOMAIN */
    EVP_CIPHER_CTX *pad_prf;   /* … PRF_PAD_DOMAIN */
} audit_key;

static void audit_key_free(audit_key *key) {
    EVP_CIPHER_CTX_free(key->split_prf);
    EVP_CIPHER_CTX_free(key->order_prf);
    EVP_CIPHER_CTX_free(key->pad_prf);
    key->split_prf = key->order_prf = key->pad_prf = NULL;
}

/* An AES-256-ECB context (no padding) under HMAC(secret, domain), whose inner state after the key
 * block is ``inner``; NULL when OpenSSL fails. */
static EVP_CIPHER_CTX *prf_new(const audit_key *key, const prefix_t *inner, const char *domain) {
    prefix_t prefixed;
    unsigned char digest[HASH_BYTES], aes_key[HASH_BYTES];
    prefix_extend(&prefixed, inner, domain, strlen(domain));
    static const unsigned char nothing[1] = {0};
    job_t job = job1(&prefixed, nothing, 0, digest);
    hash_one(&job);
    job = job1(&key->outer, digest, HASH_BYTES, aes_key);
    hash_one(&job);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL || EVP_EncryptInit_ex(ctx, EVP_aes_256_ecb(), NULL, aes_key, NULL) != 1 ||
        EVP_CIPHER_CTX_set_padding(ctx, 0) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        ctx = NULL;
    }
    memset(aes_key, 0, sizeof aes_key);
    return ctx;
}

/* ``blocks`` 16-byte blocks of ``in`` through the PRF into ``out``. */
static void prf_blocks(EVP_CIPHER_CTX *ctx, const unsigned char *in, unsigned char *out,
                       size_t blocks) {
    while (blocks > 0) { /* EVP takes an int length */
        size_t take = blocks < (1u << 20) ? blocks : (1u << 20);
        int length = 0;
        EVP_EncryptUpdate(ctx, out, &length, in, (int)(AES_BLOCK * take));
        in += AES_BLOCK * take;
        out += AES_BLOCK * take;
        blocks -= take;
    }
}

/* The counter block nonce(tag) ‖ u32be(counter) at ``block``, where nonce(tag) = tag[0:12] ^
 * tag[12:24] ^ (tag[24:32] ‖ 0x00000000): every byte of the 32-byte tag counts. */
static inline void counter_block(unsigned char *block, const unsigned char *tag,
                                 uint32_t counter) {
    for (int i = 0; i < NONCE_BYTES; i++) {
        block[i] = tag[i] ^ tag[NONCE_BYTES + i] ^ (i < 8 ? tag[2 * NONCE_BYTES + i] : 0);
    }
    store_u32(block + NONCE_BYTES, counter);
}

/* The padding tag of padding leaf ``number`` (two PRF_pad input blocks) at ``blocks``. */
static inline void pad_blocks(unsigned char *blocks, uint64_t number) {
    store_u64(blocks, number);
    store_u32(blocks + 8, 0);
    store_u32(blocks + 12, 0);
    store_u64(blocks + AES_BLOCK, number);
    store_u32(blocks + AES_BLOCK + 8, 0);
    store_u32(blocks + AES_BLOCK + 12, 1);
}

/* -1 when OpenSSL could not set up the PRFs (a Python error is set: call with the GIL). */
static int audit_key_init(audit_key *key, const unsigned char *secret) {
    unsigned char block[BLOCK];
    prefix_t inner;
    memset(block, 0, sizeof block);
    memcpy(block, secret, SECRET_BYTES);
    for (int i = 0; i < BLOCK; i++) {
        block[i] ^= 0x36;
    }
    prefix_init(&inner, block, sizeof block);
    for (int i = 0; i < BLOCK; i++) {
        block[i] ^= 0x36 ^ 0x5c;
    }
    prefix_init(&key->outer, block, sizeof block);
    prefix_extend(&key->salt, &inner, SALT_DOMAIN, strlen(SALT_DOMAIN));
    prefix_init(&key->user, USER_DOMAIN, sizeof USER_DOMAIN); /* with its 0x00 */
    key->split_prf = prf_new(key, &inner, PRF_SPLIT_DOMAIN);
    key->order_prf = prf_new(key, &inner, PRF_ORDER_DOMAIN);
    key->pad_prf = prf_new(key, &inner, PRF_PAD_DOMAIN);
    if (key->split_prf == NULL || key->order_prf == NULL || key->pad_prf == NULL) {
        audit_key_free(key);
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL could not set up AES-256-ECB");
        return -1;
    }
    return 0;
}

/* The outer halves of HMACs whose inner digests are in ``inner`` (32 bytes each). */
static void hmac_outer(const audit_key *key, job_t *jobs, const unsigned char *inner,
                       unsigned char *const *outs, size_t count) {
    for (size_t n = 0; n < count; n++) {
        jobs[n] = job1(&key->outer, inner + HASH_BYTES * n, HASH_BYTES, outs[n]);
    }
    hash_jobs(jobs, count);
}

/* ------------------------------------------------------------------------------------------ */
/* The split stream and the draws */

typedef struct {
    const audit_key *key;
    const unsigned char *tag;
    const unsigned char *ready; /* the first ``ready_blocks`` blocks, computed in a batch */
    uint32_t ready_blocks;
    uint32_t counter; /* the next block */
    unsigned char block[HASH_BYTES];
    int used; /* words of ``block`` already taken: 0, 1 or 2 (2 = take the next block) */
} split_stream;

static u128 next_word(split_stream *stream) {
    if (stream->used == 2) {
        uint32_t counter = stream->counter++;
        if (counter < stream->ready_blocks) {
            memcpy(stream->block, stream->ready + HASH_BYTES * counter, HASH_BYTES);
        } else { /* past the batch: a rejected word, about never */
            unsigned char input[2 * AES_BLOCK];
            counter_block(input, stream->tag, 2 * counter);
            counter_block(input + AES_BLOCK, stream->tag, 2 * counter + 1);
            prf_blocks(stream->key->split_prf, input, stream->block, 2);
        }
        stream->used = 0;
    }
    return load_u128(stream->block + AMOUNT_BYTES * stream->used++);
}

/* Uniform in 0..bound: a word w below L = 2^128 - 2^128 mod (bound + 1) gives w mod (bound + 1);
 * a word >= L is rejected and the next one taken. Returns -1 after MAX_DRAW_ATTEMPTS rejections,
 * where merkle._draw raises. */
static int draw(split_stream *stream, u128 bound, u128 *out) {
    u128 modulus = bound + 1;
    if (modulus == 0) { /* bound = 2^128 - 1: every word is below L = 2^128 and is the draw */
        *out = next_word(stream);
        return 0;
    }
    u128 rest = ((u128)0 - modulus) % modulus; /* 2^128 mod modulus */
    u128 limit = (u128)0 - rest;                /* 2^128 - rest, when rest > 0 */
    for (int attempt = 0; attempt < MAX_DRAW_ATTEMPTS; attempt++) {
        u128 word = next_word(stream);
        if (rest == 0 || word < limit) {
            *out = word % modulus;
            return 0;
        }
    }
    return -1;
}

/* Splits one account's row (n_assets amounts) into ``pieces`` rows written to ``out`` (piece
 * after piece, each n_assets amounts). */
static int split_row(split_stream *stream, const unsigned char *row, Py_ssize_t n_assets,
                     int pieces, unsigned char *out) {
    Py_ssize_t width = AMOUNT_BYTES * n_assets;
    memset(out, 0, (size_t)(width * pieces));
    for (Py_ssize_t asset = 0; asset < n_assets; asset++) {
        u128 balance = load_u128(row + AMOUNT_BYTES * asset);
        if (balance == 0) {
            continue;
        }
        u128 cuts[MAX_PIECES];
        for (int n = 0; n < pieces - 1; n++) {
            u128 cut;
            if (draw(stream, balance, &cut) != 0) {
                return -1;
            }
            int at = n; /* insertion sort: at most 15 cuts */
            while (at > 0 && cuts[at - 1] > cut) {
                cuts[at] = cuts[at - 1];
                at--;
            }
            cuts[at] = cut;
        }
        u128 previous = 0;
        for (int piece = 0; piece < pieces - 1; piece++) {
            store_u128(out + width * piece + AMOUNT_BYTES * asset, cuts[piece] - previous);
            previous = cuts[piece];
        }
        store_u128(out + width * (pieces - 1) + AMOUNT_BYTES * asset, balance - previous);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Argument helpers */

static int check_secret(const Py_buffer *secret) {
    if (secret->len != SECRET_BYTES) {
        PyErr_Format(PyExc_ValueError, "the audit secret must be %d bytes", SECRET_BYTES);
        return -1;
    }
    return 0;
}

static int check_assets(Py_ssize_t n_assets) {
    if (n_assets < 1 || n_assets > MAX_ASSETS) {
        PyErr_SetString(PyExc_ValueError, "asset count out of range");
        return -1;
    }
    return 0;
}

static PyObject *new_bytes(Py_ssize_t size, unsigned char **data) {
    PyObject *bytes = PyBytes_FromStringAndSize(NULL, size);
    if (bytes != NULL) {
        *data = (unsigned char *)PyBytes_AS_STRING(bytes);
    }
    return bytes;
}

/* ------------------------------------------------------------------------------------------ */
/* account_leaves_into(secret, ids, offsets, balances, n_assets, pieces, tags, keys, vectors) */

/* Scratch for one group of accounts: every HMAC (or PRF block) of the group is one batch. */
typedef struct {
    size_t capacity; /* jobs */
    job_t *jobs;
    unsigned char *inner;   /* 32 bytes per job */
    unsigned char *digests; /* 32 bytes per job */
    unsigned char **outs;   /* one pointer per job */
    uint32_t first_block[GROUP + 1];
    unsigned char salts[GROUP][HASH_BYTES];
} workspace;

static void workspace_free(workspace *space) {
    free(space->jobs);
    free(space->inner);
    free(space->digests);
    free(space->outs);
}

static int workspace_init(workspace *space, size_t capacity) {
    space->capacity = capacity;
    space->jobs = malloc(capacity * sizeof(job_t));
    space->inner = malloc(capacity * HASH_BYTES);
    space->digests = malloc(capacity * HASH_BYTES);
    space->outs = malloc(capacity * sizeof(unsigned char *));
    if (!space->jobs || !space->inner || !space->digests || !space->outs) {
        workspace_free(space);
        return -1;
    }
    return 0;
}

/* One group of ``count`` accounts; returns -1 when a split rejected 512 words in a row. */
static int account_group(const audit_key *key, workspace *space, Py_ssize_t count,
                         const unsigned char *id_bytes, const int64_t *offsets,
                         const unsigned char *rows, Py_ssize_t n_assets, int pieces,
                         unsigned char *tags, unsigned char *keys, unsigned char *vectors) {
    Py_ssize_t width = AMOUNT_BYTES * n_assets;
    job_t *jobs = space->jobs;
    /* salt = HMAC(secret, SALT_DOMAIN ‖ id) */
    for (Py_ssize_t n = 0; n < count; n++) {
        const unsigned char *id = id_bytes + offsets[n];
        size_t id_length = (size_t)(offsets[n + 1] - offsets[n]);
        jobs[n] = job1(&key->salt, id, id_length, space->inner + HASH_BYTES * n);
        space->outs[n] = space->salts[n];
    }
    hash_jobs(jobs, (size_t)count);
    hmac_outer(key, jobs, space->inner, space->outs, (size_t)count);
    /* tag = H(USER_DOMAIN ‖ 0x00 ‖ salt ‖ id) */
    for (Py_ssize_t n = 0; n < count; n++) {
        const unsigned char *id = id_bytes + offsets[n];
        size_t id_length = (size_t)(offsets[n + 1] - offsets[n]);
        jobs[n] = job2(&key->user, space->salts[n], HASH_BYTES, id, id_length,
                       tags + HASH_BYTES * n);
    }
    hash_jobs(jobs, (size_t)count);
    /* order keys: PRF_order(nonce(tag) ‖ u32be(piece)), straight into ``keys`` */
    size_t total = 0;
    for (Py_ssize_t n = 0; n < count; n++) {
        for (int piece = 0; piece < pieces; piece++, total++) {
            counter_block(space->inner + AES_BLOCK * total, tags + HASH_BYTES * n,
                          (uint32_t)piece);
        }
    }
    prf_blocks(key->order_prf, space->inner, keys, total);
    if (vectors == NULL) { /* not wanted: leaf_records_of_into splits again where needed */
        return 0;
    }
    if (pieces == 1) {
        memcpy(vectors, rows, (size_t)(width * count));
        return 0;
    }
    /* the split blocks (two words each) every draw needs unless a word is rejected, all in
     * one batch */
    total = 0;
    for (Py_ssize_t n = 0; n < count; n++) {
        const unsigned char *row = rows + width * n;
        size_t words = 0;
        for (Py_ssize_t asset = 0; asset < n_assets; asset++) {
            words += load_u128(row + AMOUNT_BYTES * asset) != 0;
        }
        uint32_t blocks = (uint32_t)((words * (size_t)(pieces - 1) + 1) / 2);
        space->first_block[n] = (uint32_t)total;
        for (uint32_t word = 0; word < 2 * blocks; word++) {
            counter_block(space->inner + HASH_BYTES * total + AES_BLOCK * word,
                          tags + HASH_BYTES * n, word);
        }
        total += blocks;
    }
    space->first_block[count] = (uint32_t)total;
    prf_blocks(key->split_prf, space->inner, space->digests, 2 * total);
    for (Py_ssize_t n = 0; n < count; n++) {
        split_stream stream = {
            key,
            tags + HASH_BYTES * n,
            space->digests + HASH_BYTES * space->first_block[n],
            space->first_block[n + 1] - space->first_block[n],
            0,
            {0},
            2,
        };
        if (split_row(&stream, rows + width * n, n_assets, pieces,
                      vectors + width * pieces * n) != 0) {
            return -1;
        }
    }
    return 0;
}

/* A writable output buffer of exactly ``size`` bytes. */
static int check_output(const Py_buffer *buffer, Py_ssize_t size, const char *name) {
    if (buffer->readonly || buffer->len != size) {
        PyErr_Format(PyExc_ValueError, "%s must be a writable buffer of %zd bytes", name, size);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(account_leaves_into_doc,
"account_leaves_into(secret, ids, offsets, balances, n_assets, pieces, tags, keys, vectors)\n\n"
"merkle.account_leaves_py for ``count`` accounts given as columns: ``ids`` the UTF-8 ids back\n"
"to back, ``offsets`` count + 1 native int64 (id n is ids[offsets[n]:offsets[n + 1]]),\n"
"``balances`` one enc(B) row per account. Writes the tags (32 bytes per account), the order-key\n"
"prefixes (16 bytes per piece) and the piece vectors (enc, account after account) into the\n"
"writable buffers ``tags``, ``keys`` and ``vectors`` (None: not wanted, and not computed).");

static PyObject *account_leaves_into(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer secret, ids, offsets_buffer, balances, tags, keys, vectors = {0};
    Py_ssize_t n_assets;
    int pieces;
    PyObject *vectors_object;
    if (!PyArg_ParseTuple(args, "y*y*y*y*niw*w*O:account_leaves_into", &secret, &ids,
                          &offsets_buffer, &balances, &n_assets, &pieces, &tags, &keys,
                          &vectors_object)) {
        return NULL;
    }
    PyObject *result = NULL;
    int want_vectors = vectors_object != Py_None;
    if (want_vectors && PyObject_GetBuffer(vectors_object, &vectors, PyBUF_WRITABLE) < 0) {
        goto done;
    }
    if (check_secret(&secret) < 0 || check_assets(n_assets) < 0) {
        goto done;
    }
    if (pieces < 1 || pieces > MAX_PIECES) {
        PyErr_SetString(PyExc_ValueError, "pieces out of range");
        goto done;
    }
    Py_ssize_t width = AMOUNT_BYTES * n_assets;
    if (offsets_buffer.len % (Py_ssize_t)sizeof(int64_t) != 0 ||
        offsets_buffer.len < (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "offsets must hold count + 1 int64");
        goto done;
    }
    Py_ssize_t count = offsets_buffer.len / (Py_ssize_t)sizeof(int64_t) - 1;
    const int64_t *offsets = (const int64_t *)offsets_buffer.buf;
    if (balances.len != count * width) {
        PyErr_SetString(PyExc_ValueError, "one balance row per account");
        goto done;
    }
    if (offsets[0] < 0 || offsets[count] > ids.len) {
        PyErr_SetString(PyExc_ValueError, "offsets out of range");
        goto done;
    }
    for (Py_ssize_t n = 0; n < count; n++) {
        if (offsets[n + 1] < offsets[n]) {
            PyErr_SetString(PyExc_ValueError, "offsets must not decrease");
            goto done;
        }
    }
    if (check_output(&tags, count * HASH_BYTES, "tags") < 0 ||
        check_output(&keys, count * pieces * KEY_BYTES, "keys") < 0 ||
        (want_vectors && check_output(&vectors, count * pieces * width, "vectors") < 0)) {
        goto done;
    }
    /* jobs per group: the order keys (pieces each) or the split blocks, whichever is more */
    size_t split_blocks = ((size_t)n_assets * (size_t)(pieces - 1) + 1) / 2;
    size_t per_account = split_blocks > (size_t)pieces ? split_blocks : (size_t)pieces;
    audit_key key;
    if (audit_key_init(&key, (const unsigned char *)secret.buf) < 0) {
        goto done;
    }
    workspace space;
    if (workspace_init(&space, GROUP * per_account) < 0) {
        audit_key_free(&key);
        PyErr_NoMemory();
        goto done;
    }
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *id_bytes = (const unsigned char *)ids.buf;
    const unsigned char *rows = (const unsigned char *)balances.buf;
    unsigned char *tags_out = tags.buf, *keys_out = keys.buf, *vectors_out = vectors.buf;
    for (Py_ssize_t first = 0; first < count && !failed; first += GROUP) {
        Py_ssize_t size = count - first < GROUP ? count - first : GROUP;
        failed = account_group(&key, &space, size, id_bytes, offsets + first,
                               rows + width * first, n_assets, pieces,
                               tags_out + HASH_BYTES * first,
                               keys_out + KEY_BYTES * pieces * first,
                               want_vectors ? vectors_out + width * pieces * first : NULL) != 0;
    }
    Py_END_ALLOW_THREADS
    workspace_free(&space);
    audit_key_free(&key);
    if (failed) {
        PyErr_SetString(PyExc_AssertionError, "split stream rejected 512 words in a row");
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&secret);
    PyBuffer_Release(&ids);
    PyBuffer_Release(&offsets_buffer);
    PyBuffer_Release(&balances);
    PyBuffer_Release(&tags);
    PyBuffer_Release(&keys);
    if (vectors.obj != NULL) {
        PyBuffer_Release(&vectors);
    }
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* padding_leaves_into(secret, first, count, tags, keys) */

PyDoc_STRVAR(padding_leaves_into_doc,
"padding_leaves_into(secret, first, count, tags, keys)\n\n"
"merkle.padding_leaves_py: writes the tags (32 bytes) and order-key prefixes (16 bytes) of\n"
"padding leaves first .. first + count - 1 into the writable buffers ``tags`` and ``keys``.");

static PyObject *padding_leaves_into(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer secret, tags, keys;
    unsigned long long first;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "y*Knw*w*:padding_leaves_into", &secret, &first, &count, &tags,
                          &keys)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (check_secret(&secret) < 0) {
        goto done;
    }
    if (count < 0 || (unsigned long long)count > UINT64_MAX - first) {
        PyErr_SetString(PyExc_ValueError, "padding range out of range");
        goto done;
    }
    if (check_output(&tags, count * HASH_BYTES, "tags") < 0 ||
        check_output(&keys, count * KEY_BYTES, "keys") < 0) {
        goto done;
    }
    audit_key key;
    if (audit_key_init(&key, (const unsigned char *)secret.buf) < 0) {
        goto done;
    }
    workspace space;
    if (workspace_init(&space, GROUP) < 0) {
        audit_key_free(&key);
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    unsigned char *tags_out = tags.buf, *keys_out = keys.buf;
    for (Py_ssize_t start = 0; start < count; start += GROUP) {
        size_t size = (size_t)(count - start < GROUP ? count - start : GROUP);
        unsigned char *tag_group = tags_out + HASH_BYTES * start;
        for (size_t n = 0; n < size; n++) { /* tag = PRF_pad(u64be(p) ‖ 0 ‖ 0, u64be(p) ‖ 0 ‖ 1) */
            pad_blocks(space.inner + HASH_BYTES * n, first + (unsigned long long)start + n);
        }
        prf_blocks(key.pad_prf, space.inner, tag_group, 2 * size);
        for (size_t n = 0; n < size; n++) { /* order key of piece 0 */
            counter_block(space.inner + AES_BLOCK * n, tag_group + HASH_BYTES * n, 0);
        }
        prf_blocks(key.order_prf, space.inner, keys_out + KEY_BYTES * start, size);
    }
    Py_END_ALLOW_THREADS
    workspace_free(&space);
    audit_key_free(&key);
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&secret);
    PyBuffer_Release(&tags);
    PyBuffer_Release(&keys);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* Leaves */

static const unsigned char ZEROS[MAX_WIDTH];

/* The leaf record of (tag, piece, vector) at ``target``: its hash is the job's digest. */
static inline job_t leaf_job(const prefix_t *leaf_prefix, unsigned char *head,
                             const unsigned char *tag, uint32_t piece,
                             const unsigned char *vector, Py_ssize_t width,
                             unsigned char *target) {
    memcpy(head, tag, HASH_BYTES);
    store_u32(head + HASH_BYTES, piece);
    memcpy(target + HASH_BYTES, vector, (size_t)width);
    return job2(leaf_prefix, head, HASH_BYTES + 4, vector, (size_t)width, target);
}

PyDoc_STRVAR(leaf_records_doc,
"leaf_records(tags, pieces, vectors, width) -> bytes\n\n"
"merkle.leaf_records_py: per leaf H(0x00 ‖ tag ‖ u32be(piece) ‖ enc(B)) ‖ enc(B), from ``count``\n"
"tags (32 bytes each), pieces (native uint32) and vectors (``width`` bytes each).");

static PyObject *leaf_records(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer tags, pieces_buffer, vectors;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "y*y*y*n:leaf_records", &tags, &pieces_buffer, &vectors,
                          &width)) {
        return NULL;
    }
    PyObject *records = NULL;
    unsigned char *out = NULL;
    Py_ssize_t count = tags.len / HASH_BYTES;
    if (width < AMOUNT_BYTES || width > MAX_WIDTH || width % AMOUNT_BYTES != 0) {
        PyErr_SetString(PyExc_ValueError, "vector width out of range");
        goto done;
    }
    if (tags.len != count * HASH_BYTES ||
        pieces_buffer.len != count * (Py_ssize_t)sizeof(uint32_t) ||
        vectors.len != count * width) {
        PyErr_SetString(PyExc_ValueError, "misaligned");
        goto done;
    }
    Py_ssize_t record = HASH_BYTES + width;
    records = new_bytes(count * record, &out);
    if (records == NULL) {
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    static const unsigned char leaf_byte[1] = {0x00};
    prefix_t leaf_prefix;
    prefix_init(&leaf_prefix, leaf_byte, 1);
    const unsigned char *tag_bytes = (const unsigned char *)tags.buf;
    const unsigned char *vector_bytes = (const unsigned char *)vectors.buf;
    const uint32_t *pieces = (const uint32_t *)pieces_buffer.buf;
    unsigned char heads[2][HASH_BYTES + 4];
    job_t jobs[2];
    for (Py_ssize_t n = 0; n < count; n++) {
        jobs[n & 1] = leaf_job(&leaf_prefix, heads[n & 1], tag_bytes + HASH_BYTES * n, pieces[n],
                               vector_bytes + width * n, width, out + record * n);
        if (n & 1) {
            hash_pair(&jobs[0], &jobs[1]);
        } else if (n + 1 == count) {
            hash_one(&jobs[0]);
        }
    }
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&tags);
    PyBuffer_Release(&pieces_buffer);
    PyBuffer_Release(&vectors);
    return records;
}

/* The inputs of leaf_records_by_id(_into), checked. */
typedef struct {
    Py_buffer ids, tags, pad_tags, vectors;
    int pieces;
    Py_ssize_t width, count;
    int64_t real;
} leaf_gather;

static void leaf_gather_release(leaf_gather *gather) {
    PyBuffer_Release(&gather->ids);
    PyBuffer_Release(&gather->tags);
    PyBuffer_Release(&gather->pad_tags);
    PyBuffer_Release(&gather->vectors);
}

/* Checks the buffers (already acquired); on failure sets the error and returns -1. */
static int leaf_gather_check(leaf_gather *gather) {
    if (gather->width < AMOUNT_BYTES || gather->width > MAX_WIDTH ||
        gather->width % AMOUNT_BYTES != 0) {
        PyErr_SetString(PyExc_ValueError, "vector width out of range");
        return -1;
    }
    if (gather->pieces < 1 || gather->pieces > MAX_PIECES) {
        PyErr_SetString(PyExc_ValueError, "pieces out of range");
        return -1;
    }
    gather->count = gather->ids.len / (Py_ssize_t)sizeof(int64_t);
    gather->real = gather->vectors.len / gather->width;
    int64_t padding = gather->pad_tags.len / HASH_BYTES;
    if (gather->ids.len % (Py_ssize_t)sizeof(int64_t) != 0 ||
        gather->vectors.len % gather->width != 0 || gather->tags.len % HASH_BYTES != 0 ||
        gather->pad_tags.len % HASH_BYTES != 0 ||
        gather->real > (int64_t)(gather->tags.len / HASH_BYTES) * gather->pieces) {
        PyErr_SetString(PyExc_ValueError, "misaligned");
        return -1;
    }
    const int64_t *ids = (const int64_t *)gather->ids.buf;
    for (Py_ssize_t n = 0; n < gather->count; n++) {
        if (ids[n] < 0 || ids[n] >= gather->real + padding) {
            PyErr_SetString(PyExc_ValueError, "leaf id out of range");
            return -1;
        }
    }
    return 0;
}

/* The records of the checked leaves into ``out`` (count records); call without the GIL. */
static void leaf_gather_run(const leaf_gather *gather, unsigned char *out) {
    static const unsigned char leaf_byte[1] = {0x00};
    prefix_t leaf_prefix;
    prefix_init(&leaf_prefix, leaf_byte, 1);
    const int64_t *ids = (const int64_t *)gather->ids.buf;
    const unsigned char *tag_bytes = (const unsigned char *)gather->tags.buf;
    const unsigned char *pad_bytes = (const unsigned char *)gather->pad_tags.buf;
    const unsigned char *vector_bytes = (const unsigned char *)gather->vectors.buf;
    Py_ssize_t count = gather->count, width = gather->width, record = HASH_BYTES + width;
    int64_t real = gather->real;
    int pieces = gather->pieces;
    unsigned char heads[2][HASH_BYTES + 4];
    job_t jobs[2];
    for (Py_ssize_t n = 0; n < count; n++) {
        if (n + GATHER_AHEAD < count) { /* the gathers miss the cache: ask for it early */
            int64_t later = ids[n + GATHER_AHEAD];
            if (later < real) {
                __builtin_prefetch(tag_bytes + HASH_BYTES * (later / pieces));
                __builtin_prefetch(vector_bytes + width * later);
            } else {
                __builtin_prefetch(pad_bytes + HASH_BYTES * (later - real));
            }
        }
        int64_t id = ids[n];
        unsigned char *target = out + record * n;
        if (id < real) {
            jobs[n & 1] = leaf_job(&leaf_prefix, heads[n & 1],
                                   tag_bytes + HASH_BYTES * (id / pieces),
                                   (uint32_t)(id % pieces), vector_bytes + width * id, width,
                                   target);
        } else {
            jobs[n & 1] = leaf_job(&leaf_prefix, heads[n & 1],
                                   pad_bytes + HASH_BYTES * (id - real), 0, ZEROS, width,
                                   target);
        }
        if (n & 1) {
            hash_pair(&jobs[0], &jobs[1]);
        } else if (n + 1 == count) {
            hash_one(&jobs[0]);
        }
    }
}

PyDoc_STRVAR(leaf_records_by_id_doc,
"leaf_records_by_id(leaf_ids, tags, pad_tags, vectors, pieces, width) -> bytes\n\n"
"merkle.leaf_records_by_id_py: the level-0 records of the given leaf ids (native int64), in\n"
"that order. A leaf id below real = len(vectors) / width is piece id % pieces of account\n"
"id // pieces (tag from ``tags``, vector from ``vectors``); above, padding leaf id - real (tag\n"
"from ``pad_tags``, piece 0, zero vector).");

static PyObject *leaf_records_by_id(PyObject *module, PyObject *args) {
    (void)module;
    leaf_gather gather;
    if (!PyArg_ParseTuple(args, "y*y*y*y*in:leaf_records_by_id", &gather.ids, &gather.tags,
                          &gather.pad_tags, &gather.vectors, &gather.pieces, &gather.width)) {
        return NULL;
    }
    PyObject *records = NULL;
    unsigned char *out = NULL;
    if (leaf_gather_check(&gather) == 0) {
        records = new_bytes(gather.count * (HASH_BYTES + gather.width), &out);
        if (records != NULL) {
            Py_BEGIN_ALLOW_THREADS
            leaf_gather_run(&gather, out);
            Py_END_ALLOW_THREADS
        }
    }
    leaf_gather_release(&gather);
    return records;
}

PyDoc_STRVAR(leaf_records_by_id_into_doc,
"leaf_records_by_id_into(leaf_ids, tags, pad_tags, vectors, pieces, width, out)\n\n"
"leaf_records_by_id written into the writable buffer ``out`` of exactly the records' size\n"
"(memory the caller reuses, not a new bytes object per call).");

static PyObject *leaf_records_by_id_into(PyObject *module, PyObject *args) {
    (void)module;
    leaf_gather gather;
    Py_buffer out;
    if (!PyArg_ParseTuple(args, "y*y*y*y*inw*:leaf_records_by_id_into", &gather.ids,
                          &gather.tags, &gather.pad_tags, &gather.vectors, &gather.pieces,
                          &gather.width, &out)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (leaf_gather_check(&gather) == 0 &&
        check_output(&out, gather.count * (HASH_BYTES + gather.width), "out") == 0) {
        Py_BEGIN_ALLOW_THREADS
        leaf_gather_run(&gather, (unsigned char *)out.buf);
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    leaf_gather_release(&gather);
    PyBuffer_Release(&out);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* leaf_records_of_into(secret, leaf_ids, tags, balances, pieces, padding, width, out) */

/* The inputs of leaf_records_of_into, checked. */
typedef struct {
    Py_buffer secret, ids, tags, balances;
    int pieces;
    int64_t padding, accounts, real;
    Py_ssize_t width, count;
} leaf_derive;

static int leaf_derive_check(leaf_derive *derive) {
    if (check_secret(&derive->secret) < 0) {
        return -1;
    }
    if (derive->width < AMOUNT_BYTES || derive->width > MAX_WIDTH ||
        derive->width % AMOUNT_BYTES != 0) {
        PyErr_SetString(PyExc_ValueError, "vector width out of range");
        return -1;
    }
    if (derive->pieces < 1 || derive->pieces > MAX_PIECES || derive->padding < 0) {
        PyErr_SetString(PyExc_ValueError, "pieces or padding out of range");
        return -1;
    }
    derive->count = derive->ids.len / (Py_ssize_t)sizeof(int64_t);
    derive->accounts = derive->tags.len / HASH_BYTES;
    derive->real = derive->accounts * derive->pieces;
    if (derive->ids.len % (Py_ssize_t)sizeof(int64_t) != 0 ||
        derive->tags.len % HASH_BYTES != 0 ||
        derive->balances.len != derive->accounts * derive->width) {
        PyErr_SetString(PyExc_ValueError, "misaligned");
        return -1;
    }
    const int64_t *ids = (const int64_t *)derive->ids.buf;
    for (Py_ssize_t n = 0; n < derive->count; n++) {
        if (ids[n] < 0 || ids[n] >= derive->real + derive->padding) {
            PyErr_SetString(PyExc_ValueError, "leaf id out of range");
            return -1;
        }
    }
    return 0;
}

/* Scratch for a group of leaves: the PRF blocks (split words or padding tags) of every leaf
 * in one batch, then the leaves themselves. */
typedef struct {
    workspace space;
    unsigned char *split;            /* width * pieces: one account's pieces */
    unsigned char pad_input[GROUP * HASH_BYTES]; /* PRF_pad input blocks, two per padding leaf */
    unsigned char pad_tags[GROUP][HASH_BYTES];  /* the group's padding tags, in order */
    uint32_t first[GROUP + 1]; /* leaf n's jobs are first[n] .. first[n + 1] - 1 */
} derive_space;

/* Asks for the tag and balance row of one leaf: the leaves are in a random order, so these miss
 * the cache. Asked for while the group before is hashed, one leaf at a time (a burst of prefetches
 * would overflow the queue of misses and be dropped), they have arrived when needed. */
static inline void derive_prefetch(const leaf_derive *derive, int64_t id) {
    if (id < derive->real) {
        int64_t account = id / derive->pieces;
        const unsigned char *tag = (const unsigned char *)derive->tags.buf + HASH_BYTES * account;
        const unsigned char *row = (const unsigned char *)derive->balances.buf +
                                   derive->width * account;
        __builtin_prefetch(tag);
        __builtin_prefetch(tag + HASH_BYTES - 1);
        __builtin_prefetch(row);
        __builtin_prefetch(row + derive->width - 1);
    }
}

/* One group of ``count`` leaves into ``out``; -1 when a split rejected 512 words in a row. */
static int derive_group(const audit_key *key, const prefix_t *leaf_prefix, derive_space *work,
                        const leaf_derive *derive, const int64_t *ids, Py_ssize_t count,
                        Py_ssize_t next_count, unsigned char *out) {
    const unsigned char *tags = (const unsigned char *)derive->tags.buf;
    const unsigned char *rows = (const unsigned char *)derive->balances.buf;
    Py_ssize_t width = derive->width, record = HASH_BYTES + width;
    Py_ssize_t n_assets = width / AMOUNT_BYTES;
    int pieces = derive->pieces;
    workspace *space = &work->space;
    uint32_t total = 0, padding = 0;
    for (Py_ssize_t n = 0; n < count; n++) {
        work->first[n] = total;
        int64_t id = ids[n];
        if (id >= derive->real) { /* the padding tag, in its own batch below */
            pad_blocks(work->pad_input + HASH_BYTES * padding, (uint64_t)(id - derive->real));
            padding++;
            continue;
        }
        if (pieces == 1) {
            continue;
        }
        const unsigned char *row = rows + width * (id / pieces);
        size_t words = 0;
        for (Py_ssize_t asset = 0; asset < n_assets; asset++) {
            words += load_u128(row + AMOUNT_BYTES * asset) != 0;
        }
        uint32_t blocks = (uint32_t)((words * (size_t)(pieces - 1) + 1) / 2);
        for (uint32_t word = 0; word < 2 * blocks; word++) {
            counter_block(space->inner + HASH_BYTES * total + AES_BLOCK * word,
                          tags + HASH_BYTES * (id / pieces), word);
        }
        total += blocks;
    }
    work->first[count] = total;
    prf_blocks(key->split_prf, space->inner, space->digests, 2 * total);
    prf_blocks(key->pad_prf, work->pad_input, work->pad_tags[0], 2 * padding);
    padding = 0;
    unsigned char heads[2][HASH_BYTES + 4];
    job_t leaves[2];
    for (Py_ssize_t n = 0; n < count; n++) {
        if (n < next_count) { /* the next group's leaves (ids[count ...]) */
            derive_prefetch(derive, ids[count + n]);
        }
        int64_t id = ids[n];
        unsigned char *target = out + record * n;
        const unsigned char *tag, *vector;
        uint32_t piece;
        if (id >= derive->real) {
            tag = work->pad_tags[padding++], piece = 0, vector = ZEROS;
        } else {
            int64_t account = id / pieces;
            tag = tags + HASH_BYTES * account, piece = (uint32_t)(id % pieces);
            vector = rows + width * account;
            if (pieces > 1) {
                split_stream stream = {
                    key, tag, space->digests + HASH_BYTES * work->first[n],
                    work->first[n + 1] - work->first[n], 0, {0}, 2,
                };
                if (split_row(&stream, vector, n_assets, pieces, work->split) != 0) {
                    return -1;
                }
                vector = work->split + width * piece;
            }
        }
        /* the vector is copied into the record first: the job hashes it from there */
        leaves[n & 1] = leaf_job(leaf_prefix, heads[n & 1], tag, piece, vector, width, target);
        leaves[n & 1].parts[1].data = target + HASH_BYTES;
        if (n & 1) {
            hash_pair(&leaves[0], &leaves[1]);
        } else if (n + 1 == count) {
            hash_one(&leaves[0]);
        }
    }
    return 0;
}

PyDoc_STRVAR(leaf_records_of_into_doc,
"leaf_records_of_into(secret, leaf_ids, tags, balances, pieces, padding, width, out)\n\n"
"merkle.leaf_records_of_py: the level-0 records of the given leaf ids (native int64), in that\n"
"order, into the writable buffer ``out``, computed from the accounts' tags (32 bytes each) and\n"
"balance rows (``width`` bytes each) alone: a leaf id below real = accounts * pieces is piece\n"
"id % pieces of account id // pieces, its vector split again from the row; above, padding leaf\n"
"p = id - real (< ``padding``), its tag PRF_pad(u64be(p) ‖ 0 ‖ 0|1). So a build needs\n"
"to keep neither the piece vectors nor the padding tags.");

static PyObject *leaf_records_of_into(PyObject *module, PyObject *args) {
    (void)module;
    leaf_derive derive;
    Py_buffer out;
    long long padding;
    if (!PyArg_ParseTuple(args, "y*y*y*y*iLnw*:leaf_records_of_into", &derive.secret,
                          &derive.ids, &derive.tags, &derive.balances, &derive.pieces, &padding,
                          &derive.width, &out)) {
        return NULL;
    }
    derive.padding = (int64_t)padding;
    PyObject *result = NULL;
    derive_space *work = NULL;
    if (leaf_derive_check(&derive) < 0 ||
        check_output(&out, derive.count * (HASH_BYTES + derive.width), "out") < 0) {
        goto done;
    }
    size_t n_assets = (size_t)(derive.width / AMOUNT_BYTES);
    size_t split_blocks = (n_assets * (size_t)(derive.pieces - 1) + 1) / 2;
    size_t per_leaf = split_blocks > 1 ? split_blocks : 1; /* or the one padding-tag job */
    work = calloc(1, sizeof(derive_space));
    if (work == NULL || workspace_init(&work->space, GROUP * per_leaf) < 0) {
        free(work);
        work = NULL;
        PyErr_NoMemory();
        goto done;
    }
    work->split = malloc((size_t)(derive.width * derive.pieces));
    if (work->split == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    audit_key key;
    if (audit_key_init(&key, (const unsigned char *)derive.secret.buf) < 0) {
        goto done;
    }
    int failed = 0;
    Py_BEGIN_ALLOW_THREADS
    static const unsigned char leaf_byte[1] = {0x00};
    prefix_t leaf_prefix;
    prefix_init(&leaf_prefix, leaf_byte, 1);
    const int64_t *ids = (const int64_t *)derive.ids.buf;
    unsigned char *target = (unsigned char *)out.buf;
    Py_ssize_t record = HASH_BYTES + derive.width;
    for (Py_ssize_t first = 0; first < derive.count && !failed; first += GROUP) {
        Py_ssize_t size = derive.count - first < GROUP ? derive.count - first : GROUP;
        Py_ssize_t next = derive.count - first - size < GROUP ? derive.count - first - size : GROUP;
        failed = derive_group(&key, &leaf_prefix, work, &derive, ids + first, size, next,
                              target + record * first) != 0;
    }
    Py_END_ALLOW_THREADS
    audit_key_free(&key);
    if (failed) {
        PyErr_SetString(PyExc_AssertionError, "split stream rejected 512 words in a row");
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    if (work != NULL) {
        workspace_free(&work->space);
        free(work->split);
        free(work);
    }
    PyBuffer_Release(&derive.secret);
    PyBuffer_Release(&derive.ids);
    PyBuffer_Release(&derive.tags);
    PyBuffer_Release(&derive.balances);
    PyBuffer_Release(&out);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* parents(children, n_assets) -> records, or None when a sum exceeds 2^128 - 1 */

/* The ``count`` parents of the child records ``in`` into ``out``; returns whether a sum
 * overflowed. Call without the GIL. */
static int parents_run(const unsigned char *in, Py_ssize_t count, Py_ssize_t n_assets,
                       unsigned char *out) {
    Py_ssize_t record = HASH_BYTES + AMOUNT_BYTES * n_assets;
    int overflow = 0;
    static const unsigned char node_byte[1] = {0x01};
    prefix_t node_prefix;
    prefix_init(&node_prefix, node_byte, 1);
    job_t jobs[2];
    for (Py_ssize_t n = 0; n < count; n++) {
        const unsigned char *left = in + 2 * record * n;
        const unsigned char *right = left + record;
        unsigned char *target = out + record * n;
        jobs[n & 1] = job1(&node_prefix, left, (size_t)(2 * record), target);
        if (n & 1) {
            hash_pair(&jobs[0], &jobs[1]);
        } else if (n + 1 == count) {
            hash_one(&jobs[0]);
        }
        for (Py_ssize_t asset = 0; asset < n_assets; asset++) {
            Py_ssize_t at = HASH_BYTES + AMOUNT_BYTES * asset;
            u128 a = load_u128(left + at);
            u128 sum = a + load_u128(right + at);
            overflow |= sum < a;
            store_u128(target + at, sum);
        }
    }
    return overflow;
}

/* The number of parents of ``children``, or -1 (error set). */
static Py_ssize_t parents_count(const Py_buffer *children, Py_ssize_t n_assets) {
    if (check_assets(n_assets) < 0) {
        return -1;
    }
    Py_ssize_t record = HASH_BYTES + AMOUNT_BYTES * n_assets;
    if (children->len == 0 || children->len % (2 * record) != 0) {
        PyErr_SetString(PyExc_ValueError, "children must come in pairs");
        return -1;
    }
    return children->len / (2 * record);
}

PyDoc_STRVAR(parents_doc,
"parents(children, n_assets) -> bytes | None\n\n"
"merkle.parents_py: the next level up from an even number of adjacent child records\n"
"hash(32) ‖ enc(B); None when a node's balance would exceed 2^128 - 1.");

static PyObject *parents(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer children;
    Py_ssize_t n_assets;
    if (!PyArg_ParseTuple(args, "y*n:parents", &children, &n_assets)) {
        return NULL;
    }
    PyObject *records = NULL;
    unsigned char *out = NULL;
    Py_ssize_t count = parents_count(&children, n_assets);
    if (count >= 0) {
        records = new_bytes(count * (HASH_BYTES + AMOUNT_BYTES * n_assets), &out);
    }
    if (records != NULL) {
        int overflow;
        Py_BEGIN_ALLOW_THREADS
        overflow = parents_run((const unsigned char *)children.buf, count, n_assets, out);
        Py_END_ALLOW_THREADS
        if (overflow) {
            Py_DECREF(records);
            records = Py_None;
            Py_INCREF(records);
        }
    }
    PyBuffer_Release(&children);
    return records;
}

PyDoc_STRVAR(parents_into_doc,
"parents_into(children, n_assets, out) -> bool\n\n"
"parents written into the writable buffer ``out`` of exactly the parents' size, which must not\n"
"overlap ``children``; True when every balance fit (False: a sum exceeded 2^128 - 1 and ``out``\n"
"is not a valid level).");

static PyObject *parents_into(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer children, out;
    Py_ssize_t n_assets;
    if (!PyArg_ParseTuple(args, "y*nw*:parents_into", &children, &n_assets, &out)) {
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t count = parents_count(&children, n_assets);
    if (count >= 0 &&
        check_output(&out, count * (HASH_BYTES + AMOUNT_BYTES * n_assets), "out") == 0) {
        const unsigned char *in = (const unsigned char *)children.buf;
        unsigned char *target = (unsigned char *)out.buf;
        if (target < in + children.len && in < target + out.len) {
            PyErr_SetString(PyExc_ValueError, "out overlaps children");
        } else {
            int overflow;
            Py_BEGIN_ALLOW_THREADS
            overflow = parents_run(in, count, n_assets, target);
            Py_END_ALLOW_THREADS
            result = PyBool_FromLong(!overflow);
        }
    }
    PyBuffer_Release(&children);
    PyBuffer_Release(&out);
    return result;
}

/* ------------------------------------------------------------------------------------------ */
/* sort_keys(keys, stride, order, part, parts) -> duplicate */

typedef struct {
    uint64_t high;
    int64_t index;
} sort_item;

static inline int item_less(const sort_item *a, const sort_item *b, const unsigned char *keys,
                            Py_ssize_t stride) {
    if (a->high != b->high) {
        return a->high < b->high;
    }
    return load_u64(keys + stride * a->index + 8) < load_u64(keys + stride * b->index + 8);
}

/* Heapsort for a large bucket: only keys that are not uniform (tests) make one. */
static void sift_down(sort_item *items, int64_t root, int64_t size, const unsigned char *keys,
                      Py_ssize_t stride) {
    for (;;) {
        int64_t child = 2 * root + 1;
        if (child >= size) {
            return;
        }
        if (child + 1 < size && item_less(&items[child], &items[child + 1], keys, stride)) {
            child++;
        }
        if (!item_less(&items[root], &items[child], keys, stride)) {
            return;
        }
        sort_item swap = items[root];
        items[root] = items[child];
        items[child] = swap;
        root = child;
    }
}

static void heap_sort(sort_item *items, int64_t size, const unsigned char *keys,
                      Py_ssize_t stride) {
    for (int64_t root = size / 2 - 1; root >= 0; root--) {
        sift_down(items, root, size, keys, stride);
    }
    for (int64_t end = size - 1; end > 0; end--) {
        sort_item swap = items[0];
        items[0] = items[end];
        items[end] = swap;
        sift_down(items, 0, end, keys, stride);
    }
}

static void insertion_sort(sort_item *items, int64_t size, const unsigned char *keys,
                           Py_ssize_t stride) {
    for (int64_t i = 1; i < size; i++) {
        sort_item item = items[i];
        int64_t at = i;
        while (at > 0 && item_less(&item, &items[at - 1], keys, stride)) {
            items[at] = items[at - 1];
            at--;
        }
        items[at] = item;
    }
}

/* Sorts one top-level bucket: a counting sort on the next ``bits`` bits into ``scratch``, then
 * each (small) run by comparison; writes the key numbers to ``order``. Returns 1 when two keys
 * are equal. */
static int sort_bucket(sort_item *items, int64_t size, int skip, int bits, sort_item *scratch,
                       int64_t *counts, const unsigned char *keys, Py_ssize_t stride,
                       int64_t *order) {
    int64_t slots = (int64_t)1 << bits;
    int shift = bits ? 64 - skip - bits : 0; /* a shift by 64 would be undefined */
    uint64_t mask = (uint64_t)slots - 1;
    memset(counts, 0, (size_t)(slots + 1) * sizeof(int64_t));
    for (int64_t i = 0; i < size; i++) {
        counts[((items[i].high >> shift) & mask) + 1]++;
    }
    for (int64_t b = 0; b < slots; b++) {
        counts[b + 1] += counts[b];
    }
    for (int64_t i = 0; i < size; i++) {
        scratch[counts[(items[i].high >> shift) & mask]++] = items[i];
    }
    int duplicate = 0;
    int64_t start = 0;
    for (int64_t b = 0; b < slots; b++) {
        int64_t end = counts[b];
        if (end - start > 32) {
            heap_sort(scratch + start, end - start, keys, stride);
        } else {
            insertion_sort(scratch + start, end - start, keys, stride);
        }
        start = end;
    }
    for (int64_t i = 0; i < size; i++) {
        if (i > 0) {
            duplicate |= !item_less(&scratch[i - 1], &scratch[i], keys, stride);
        }
        order[i] = scratch[i].index;
    }
    return duplicate;
}

PyDoc_STRVAR(sort_keys_doc,
"sort_keys(keys, stride, order, part, parts) -> bool\n\n"
"The order of n 16-byte keys (key j at keys[stride * j:stride * j + 16]) sorted bytewise, written\n"
"to ``order`` (n native int64: position → key number). A radix pass on the top bits of the\n"
"keys spreads them over at most 2048 buckets, a second one spreads each bucket so that about\n"
"two keys share a slot (uniform keys), and the slots are sorted by comparison. ``parts`` calls\n"
"with part = 0 .. parts - 1, from as many threads, each sort 1/parts of the buckets. Returns\n"
"True when two keys are equal (then the order is not to be used).");

static PyObject *sort_keys(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer keys_buffer, order_buffer;
    Py_ssize_t stride;
    int part, parts;
    if (!PyArg_ParseTuple(args, "y*nw*ii:sort_keys", &keys_buffer, &stride, &order_buffer, &part,
                          &parts)) {
        return NULL;
    }
    PyObject *result = NULL;
    if (stride < KEY_BYTES || parts < 1 || part < 0 || part >= parts) {
        PyErr_SetString(PyExc_ValueError, "bad stride or part");
        goto done;
    }
    Py_ssize_t n = order_buffer.len / (Py_ssize_t)sizeof(int64_t);
    if (order_buffer.len % (Py_ssize_t)sizeof(int64_t) != 0 ||
        (n > 0 && keys_buffer.len < stride * (n - 1) + KEY_BYTES)) {
        PyErr_SetString(PyExc_ValueError, "keys and order differ in length");
        goto done;
    }
    int bits = 0; /* about two keys per slot in all */
    while (bits < 40 && ((Py_ssize_t)1 << (bits + 1)) <= n) {
        bits++;
    }
    int top = bits < 11 ? bits : 11, sub = bits - top;
    if (sub > 16) {
        sub = 16;
    }
    int64_t buckets = (int64_t)1 << top;
    int64_t first = buckets * part / parts, last = buckets * (part + 1) / parts;
    int duplicate = 0, no_memory = 0;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *keys = (const unsigned char *)keys_buffer.buf;
    int64_t *order = (int64_t *)order_buffer.buf;
    int64_t *counts = calloc((size_t)buckets + 1, sizeof(int64_t));
    int64_t *sub_counts = malloc(((size_t)1 << sub) * sizeof(int64_t) + sizeof(int64_t));
    sort_item *items = NULL, *scratch = NULL;
#define BUCKET(high) (top ? (int64_t)((high) >> (64 - top)) : 0)
    if (counts != NULL && sub_counts != NULL) {
        for (Py_ssize_t j = 0; j < n; j++) {
            counts[BUCKET(load_u64(keys + stride * j)) + 1]++;
        }
        int64_t largest = 0;
        for (int64_t b = 0; b < buckets; b++) {
            if (b >= first && b < last && counts[b + 1] > largest) {
                largest = counts[b + 1];
            }
            counts[b + 1] += counts[b]; /* counts[b]: where bucket b starts */
        }
        int64_t base = counts[first], mine = counts[last] - base;
        items = malloc((size_t)(mine > 0 ? mine : 1) * sizeof(sort_item));
        scratch = malloc((size_t)(largest > 0 ? largest : 1) * sizeof(sort_item));
        if (items != NULL && scratch != NULL) {
            for (Py_ssize_t j = 0; j < n; j++) {
                uint64_t high = load_u64(keys + stride * j);
                int64_t bucket = BUCKET(high);
                if (bucket >= first && bucket < last) {
                    sort_item *item = &items[counts[bucket]++ - base];
                    item->high = high;
                    item->index = j;
                }
            }
            int64_t start = 0; /* counts[b] is now where bucket b ends */
            for (int64_t b = first; b < last; b++) {
                int64_t end = counts[b] - base;
                duplicate |= sort_bucket(items + start, end - start, top, sub, scratch,
                                         sub_counts, keys, stride, order + base + start);
                start = end;
            }
        } else {
            no_memory = 1;
        }
    } else {
        no_memory = 1;
    }
#undef BUCKET
    free(counts);
    free(sub_counts);
    free(items);
    free(scratch);
    Py_END_ALLOW_THREADS
    if (no_memory) {
        PyErr_NoMemory();
        goto done;
    }
    result = PyBool_FromLong(duplicate);
done:
    PyBuffer_Release(&keys_buffer);
    PyBuffer_Release(&order_buffer);
    return result;
}


/* ------------------------------------------------------------------------------------------ */
/* index_entries(accounts, tags, leaves, pieces) -> entries */

PyDoc_STRVAR(index_entries_doc,
"index_entries(accounts, tags, leaves, pieces) -> bytes\n\n"
"index.bin entries (treefile) of the given accounts (native int64), in that order: the first 16\n"
"bytes of the account's tag (32 bytes per account in ``tags``), then u64be of the leaf index of\n"
"each piece (``leaves``: pieces native int64 per account).");

static PyObject *index_entries(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer accounts_buffer, tags, leaves_buffer;
    int pieces;
    if (!PyArg_ParseTuple(args, "y*y*y*i:index_entries", &accounts_buffer, &tags, &leaves_buffer,
                          &pieces)) {
        return NULL;
    }
    PyObject *entries = NULL;
    unsigned char *out = NULL;
    Py_ssize_t count = accounts_buffer.len / (Py_ssize_t)sizeof(int64_t);
    int64_t total = tags.len / HASH_BYTES;
    if (pieces < 1 || pieces > MAX_PIECES || tags.len % HASH_BYTES != 0 ||
        accounts_buffer.len % (Py_ssize_t)sizeof(int64_t) != 0 ||
        leaves_buffer.len != total * pieces * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "misaligned");
        goto done;
    }
    const int64_t *accounts = (const int64_t *)accounts_buffer.buf;
    for (Py_ssize_t n = 0; n < count; n++) {
        if (accounts[n] < 0 || accounts[n] >= total) {
            PyErr_SetString(PyExc_ValueError, "account out of range");
            goto done;
        }
    }
    Py_ssize_t entry = KEY_BYTES + 8 * pieces;
    entries = new_bytes(count * entry, &out);
    if (entries == NULL) {
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *tag_bytes = (const unsigned char *)tags.buf;
    const int64_t *leaves = (const int64_t *)leaves_buffer.buf;
    for (Py_ssize_t n = 0; n < count; n++) {
        if (n + 8 < count) {
            __builtin_prefetch(tag_bytes + HASH_BYTES * accounts[n + 8]);
            __builtin_prefetch(leaves + pieces * accounts[n + 8]);
        }
        int64_t account = accounts[n];
        unsigned char *target = out + entry * n;
        memcpy(target, tag_bytes + HASH_BYTES * account, KEY_BYTES);
        for (int piece = 0; piece < pieces; piece++) {
            store_u64(target + KEY_BYTES + 8 * piece, (uint64_t)leaves[pieces * account + piece]);
        }
    }
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&accounts_buffer);
    PyBuffer_Release(&tags);
    PyBuffer_Release(&leaves_buffer);
    return entries;
}

/* ------------------------------------------------------------------------------------------ */
/* The back end */

static int select_backend(const char *name) {
    if (strcmp(name, "openssl") == 0) {
        compress1 = compress1_openssl;
        compress2 = compress2_openssl;
        backend_name = "openssl";
        return 0;
    }
#if HAVE_SHANI
    if (strcmp(name, "shani") == 0 && cpu_has_shani()) {
        compress1 = compress1_shani;
        compress2 = compress2_shani;
        backend_name = "shani";
        return 0;
    }
#endif
    return -1;
}

PyDoc_STRVAR(backends_doc,
"backends() -> list[str]\n\n"
"The SHA-256 back ends this CPU can run: \"openssl\" always, \"shani\" with the x86 SHA\n"
"extensions.");

static PyObject *backends(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
#if HAVE_SHANI
    if (cpu_has_shani()) {
        return Py_BuildValue("[ss]", "shani", "openssl");
    }
#endif
    return Py_BuildValue("[s]", "openssl");
}

PyDoc_STRVAR(backend_doc,
"backend(name=None) -> str\n\n"
"The SHA-256 back end in use; with a name from backends(), switch to it first (for tests: it\n"
"is process-wide, so not while another thread is hashing). Both give the same bytes.");

static PyObject *backend(PyObject *module, PyObject *args) {
    (void)module;
    const char *name = NULL;
    if (!PyArg_ParseTuple(args, "|z:backend", &name)) {
        return NULL;
    }
    if (name != NULL && select_backend(name) < 0) {
        PyErr_Format(PyExc_ValueError, "SHA-256 back end %s is not available here", name);
        return NULL;
    }
    return PyUnicode_FromString(backend_name);
}

static PyMethodDef methods[] = {
    {"account_leaves_into", account_leaves_into, METH_VARARGS, account_leaves_into_doc},
    {"padding_leaves_into", padding_leaves_into, METH_VARARGS, padding_leaves_into_doc},
    {"leaf_records", leaf_records, METH_VARARGS, leaf_records_doc},
    {"leaf_records_by_id", leaf_records_by_id, METH_VARARGS, leaf_records_by_id_doc},
    {"leaf_records_by_id_into", leaf_records_by_id_into, METH_VARARGS,
     leaf_records_by_id_into_doc},
    {"leaf_records_of_into", leaf_records_of_into, METH_VARARGS, leaf_records_of_into_doc},
    {"parents", parents, METH_VARARGS, parents_doc},
    {"parents_into", parents_into, METH_VARARGS, parents_into_doc},
    {"sort_keys", sort_keys, METH_VARARGS, sort_keys_doc},
    {"index_entries", index_entries, METH_VARARGS, index_entries_doc},
    {"backends", backends, METH_NOARGS, backends_doc},
    {"backend", backend, METH_VARARGS, backend_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    "strongroom.reserves._native",
    "The proof-of-reserves hot loops in C (SHA-256: x86 SHA extensions or OpenSSL); see merkle.py.",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__native(void) {
    if (select_backend("shani") < 0) {
        select_backend("openssl");
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddStringConstant(module, "OPENSSL_VERSION", OPENSSL_VERSION_TEXT) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
