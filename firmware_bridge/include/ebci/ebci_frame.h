/* Framing of the HIL link: COBS( header | body | crc32 ) followed by one 0x00 delimiter.
 *
 * PROTOCOL FILE: the wire protocol has two owners, firmware_bridge/ (this C) and
 * edgebci/hil/frames.py (Python). Change both, then regenerate tests/data/golden_frames.txt
 * with tests/data/make_golden_frames.py: the golden frames are decoded by both test suites.
 *
 *   header, 6 bytes little endian: u8 type, u8 flags, u16 seq, u16 len (body bytes)
 *   body,   len bytes
 *   crc32,  u32 LE, IEEE 802.3 reflected (zlib.crc32) over header + body
 *
 * COBS guarantees no 0x00 inside a frame, so 0x00 always ends one; an empty frame (a lone
 * 0x00, which the host sends to flush a half-received frame) is ignored. The encoder emits
 * standard COBS (Cheshire and Baker; the examples on Wikipedia's COBS page are test vectors):
 * a run of 254 non-zero bytes is one 0xFF block, and data ending right after such a run gets
 * no trailing empty block. The decoder also accepts that trailing 0x01.
 */
#ifndef EBCI_FRAME_H
#define EBCI_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "ebci/ebci_status.h"

#define EBCI_FRAME_HEADER_BYTES 6u
#define EBCI_FRAME_CRC_BYTES 4u
#define EBCI_FRAME_OVERHEAD_BYTES (EBCI_FRAME_HEADER_BYTES + EBCI_FRAME_CRC_BYTES)

/* COBS output size for n input bytes (no delimiter): one code byte per 254 data bytes, plus one. */
#define EBCI_COBS_MAX_BYTES(n) ((n) + (n) / 254u + 1u)
/* Bytes on the wire for a frame with a body of body_len bytes, delimiter included. */
#define EBCI_FRAME_WIRE_MAX_BYTES(body_len) (EBCI_COBS_MAX_BYTES((body_len) + EBCI_FRAME_OVERHEAD_BYTES) + 1u)

typedef struct {
    uint8_t type;
    uint8_t flags;
    uint16_t seq;
    uint16_t len;          /* body bytes */
    const uint8_t *body;   /* decode: points into the caller's buffer */
} ebci_frame_t;

/* zlib.crc32-compatible; start with crc = 0 and feed pieces in order. */
uint32_t ebci_crc32_update(uint32_t crc, const uint8_t *data, size_t n);

/* COBS-encode n bytes into out (cap bytes, at least EBCI_COBS_MAX_BYTES(n)); no delimiter. */
ebci_status_t ebci_cobs_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *n_out);

/* COBS-decode n bytes in place (the delimiter excluded); EBCI_ERR_COBS when malformed. */
ebci_status_t ebci_cobs_decode(uint8_t *buf, size_t n, size_t *n_out);

/* Encode a frame (COBS bytes and the 0x00 delimiter) into out; EBCI_ERR_ARG if cap is too small. */
ebci_status_t ebci_frame_encode(const ebci_frame_t *frame, uint8_t *out, size_t cap, size_t *n_out);

/* Decode the n bytes received before a delimiter, in place. On success frame->body points into
 * buf. Errors in the order checked: EBCI_ERR_COBS, EBCI_ERR_SHORT, EBCI_ERR_LEN, EBCI_ERR_CRC;
 * *detail (may be NULL) gets the decoded length (SHORT, LEN) or the computed crc (CRC). */
ebci_status_t ebci_frame_decode(uint8_t *buf, size_t n, ebci_frame_t *frame, uint32_t *detail);

/* Little-endian field access: the protocol is LE whatever the host. */
static inline uint16_t ebci_rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t ebci_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline void ebci_wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void ebci_wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

#endif /* EBCI_FRAME_H */
