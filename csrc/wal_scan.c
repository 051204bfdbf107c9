/*
 * wal_scan.c -- the search behind a damaged WAL record (rotorshm/wal.py, _check_torn_tail).
 *
 * Recovery must tell a torn tail (garbage after the last good record) from corruption in
 * the middle of the log (a bad record followed by a valid one).  It looks for a valid
 * record framed at any later offset whose sequence number is one of a few expected
 * values.  Python did that with one bytes.find per expected sequence and a Python call per
 * hit; on low-entropy garbage (a run of 0xFF, a repeated word) every offset is a hit and
 * the search crawled at ~1 MB/s.  Here one linear pass applies the tests of wal._record_at
 * (payload length within the limit, record inside the buffer, CRC32C over length, seq and
 * payload) to every offset whose sequence is in range, and returns the first that passes;
 * Python checks that one again with its own CRC.  The CRC32C here (hardware crc32 where the
 * CPU has SSE4.2, a table otherwise) is tested against the crc32c package.
 */
#include <string.h>

#include "kernel.h"
#include "rotorshm_native.h"

#define WAL_HEADER 16u
#define WAL_CONTINUED 0x80000000u
#define MAX_RANGES 8

/* -- CRC32C (Castagnoli, reflected 0x82F63B78, init and final xor 0xFFFFFFFF) -------- */

static uint32_t crc_table[256];
static int crc_ready;  /* 0: not set up, 1: table, 2: hardware */

static void crc_setup(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
        crc_table[i] = c;
    }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    crc_ready = __builtin_cpu_supports("sse4.2") ? 2 : 1;
#else
    crc_ready = 1;
#endif
}

static uint32_t crc_soft(uint32_t c, const uint8_t *p, size_t n) {
    while (n--)
        c = (c >> 8) ^ crc_table[(c ^ *p++) & 0xFFu];
    return c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p,
                                                          size_t n) {
    uint64_t c64 = c;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = __builtin_ia32_crc32di(c64, v);
        p += 8;
        n -= 8;
    }
    c = (uint32_t)c64;
    while (n--)
        c = __builtin_ia32_crc32qi(c, *p++);
    return c;
}
#endif

uint32_t rs_crc32c(const uint8_t *p, size_t n) {
    if (!crc_ready)
        crc_setup(); /* idempotent: racing threads compute the same table */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    if (crc_ready == 2)
        return crc_hw(0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu;
#endif
    return crc_soft(0xFFFFFFFFu, p, n) ^ 0xFFFFFFFFu;
}

int64_t rs_wal_find_record(const uint8_t *buf, size_t len, size_t from, const uint64_t *lo,
                           const uint64_t *hi, size_t nranges, uint64_t max_payload) {
    uint64_t rlo[MAX_RANGES], rwidth[MAX_RANGES];
    if (nranges == 0 || nranges > MAX_RANGES || len < WAL_HEADER)
        return -1;
    for (size_t r = 0; r < MAX_RANGES; r++) { /* unused slots repeat range 0 */
        size_t i = r < nranges ? r : 0;
        rlo[r] = lo[i];
        rwidth[r] = hi[i] - lo[i];
    }
    const size_t last = len - WAL_HEADER;
    for (size_t start = from; start <= last; start++) {
        const uint64_t seq = rs_load64_le(buf + start + 8);
        /* branch-free test of the (padded) ranges: lo <= seq <= hi, unsigned */
        int hit = (seq - rlo[0] <= rwidth[0]) | (seq - rlo[1] <= rwidth[1]);
        if (nranges > 2)
            for (size_t r = 2; r < nranges; r++)
                hit |= seq - rlo[r] <= rwidth[r];
        if (__builtin_expect(!hit, 1))
            continue;
        const uint64_t length = rs_load32_le(buf + start + 4) & ~WAL_CONTINUED;
        if (length > max_payload || length > len - start - WAL_HEADER)
            continue;
        if (rs_crc32c(buf + start + 4, WAL_HEADER - 4 + (size_t)length) ==
            rs_load32_le(buf + start))
            return (int64_t)start;
    }
    return -1;
}
