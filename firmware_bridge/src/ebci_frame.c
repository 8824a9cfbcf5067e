/* COBS + crc32 framing of the HIL link (see ebci/ebci_frame.h for the layout).
 *
 * PROTOCOL FILE: the wire protocol has two owners, firmware_bridge/ (this C) and
 * edgebci/hil/frames.py (Python). Change both, then regenerate tests/data/golden_frames.txt
 * with tests/data/make_golden_frames.py: the golden frames are decoded by both test suites.
 *
 * Portable C99, no model or board dependency: tests/c/ builds it alone with the host gcc.
 */
#include "ebci/ebci_frame.h"

/* Nibble table for the reflected polynomial 0xEDB88320: 64 bytes of flash instead of 1 KiB,
 * two lookups per byte, which is far faster than the UART feeding it. */
static const uint32_t k_crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t ebci_crc32_update(uint32_t crc, const uint8_t *data, size_t n)
{
    crc = ~crc;
    while (n--) {
        crc ^= *data++;
        crc = (crc >> 4) ^ k_crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ k_crc_nibble[crc & 15u];
    }
    return ~crc;
}

/* Streaming COBS writer: frames are encoded from header, body and crc in place, with no
 * scratch copy of the raw frame (the largest reply would otherwise need a second buffer). */
typedef struct {
    uint8_t *out;
    size_t cap;
    size_t pos;        /* next data byte */
    size_t code_pos;   /* where the open block's code byte goes */
    uint8_t code;      /* 1 + data bytes in the open block */
    uint8_t after_full;   /* the open block was started only because a 254-byte block filled */
    int overflow;
} cobs_writer_t;

static void cobs_emit(cobs_writer_t *cw, size_t at, uint8_t b)
{
    if (at < cw->cap) {
        cw->out[at] = b;
    } else {
        cw->overflow = 1;
    }
}

static void cobs_close_block(cobs_writer_t *cw)
{
    cobs_emit(cw, cw->code_pos, cw->code);
    cw->code_pos = cw->pos++;
    cw->code = 1;
    cw->after_full = 0;
}

static void cobs_begin(cobs_writer_t *cw, uint8_t *out, size_t cap)
{
    cw->out = out;
    cw->cap = cap;
    cw->code_pos = 0;
    cw->pos = 1;
    cw->code = 1;
    cw->after_full = 0;
    cw->overflow = 0;
}

static void cobs_put(cobs_writer_t *cw, const uint8_t *data, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (data[i] == 0) {
            cobs_close_block(cw);
            continue;
        }
        cobs_emit(cw, cw->pos++, data[i]);
        cw->after_full = 0;
        if (++cw->code == 0xFFu) {
            cobs_close_block(cw);
            cw->after_full = 1;
        }
    }
}

static size_t cobs_finish(cobs_writer_t *cw)
{
    if (cw->after_full) {
        return cw->code_pos;   /* standard COBS: no empty block after a full one at the end */
    }
    cobs_emit(cw, cw->code_pos, cw->code);
    return cw->pos;
}

ebci_status_t ebci_cobs_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap, size_t *n_out)
{
    cobs_writer_t cw;
    cobs_begin(&cw, out, cap);
    cobs_put(&cw, in, n);
    size_t m = cobs_finish(&cw);
    if (cw.overflow) {
        return EBCI_ERR_ARG;
    }
    *n_out = m;
    return EBCI_OK;
}

ebci_status_t ebci_cobs_decode(uint8_t *buf, size_t n, size_t *n_out)
{
    size_t r = 0, w = 0;   /* w <= r always, so decoding in place is safe */
    while (r < n) {
        uint8_t code = buf[r++];
        if (code == 0 || (size_t)(code - 1u) > n - r) {
            return EBCI_ERR_COBS;   /* a zero inside the frame, or a block running past its end */
        }
        for (uint8_t i = 1; i < code; i++) {
            uint8_t b = buf[r++];
            if (b == 0) {
                return EBCI_ERR_COBS;
            }
            buf[w++] = b;
        }
        if (code != 0xFFu && r < n) {
            buf[w++] = 0;
        }
    }
    *n_out = w;
    return EBCI_OK;
}

ebci_status_t ebci_frame_encode(const ebci_frame_t *frame, uint8_t *out, size_t cap, size_t *n_out)
{
    uint8_t header[EBCI_FRAME_HEADER_BYTES], crc_le[EBCI_FRAME_CRC_BYTES];
    if (frame->len != 0 && frame->body == NULL) {
        return EBCI_ERR_ARG;
    }
    header[0] = frame->type;
    header[1] = frame->flags;
    ebci_wr16(header + 2, frame->seq);
    ebci_wr16(header + 4, frame->len);
    uint32_t crc = ebci_crc32_update(0, header, sizeof header);
    crc = ebci_crc32_update(crc, frame->body, frame->len);
    ebci_wr32(crc_le, crc);

    cobs_writer_t cw;
    cobs_begin(&cw, out, cap);
    cobs_put(&cw, header, sizeof header);
    cobs_put(&cw, frame->body, frame->len);
    cobs_put(&cw, crc_le, sizeof crc_le);
    size_t m = cobs_finish(&cw);
    if (cw.overflow || m >= cap) {
        return EBCI_ERR_ARG;
    }
    out[m] = 0;
    *n_out = m + 1;
    return EBCI_OK;
}

static ebci_status_t frame_reject(ebci_status_t status, uint32_t value, uint32_t *detail)
{
    if (detail != NULL) {
        *detail = value;
    }
    return status;
}

ebci_status_t ebci_frame_decode(uint8_t *buf, size_t n, ebci_frame_t *frame, uint32_t *detail)
{
    size_t d = 0;
    if (ebci_cobs_decode(buf, n, &d) != EBCI_OK) {
        return frame_reject(EBCI_ERR_COBS, 0, detail);
    }
    if (d < EBCI_FRAME_OVERHEAD_BYTES) {
        return frame_reject(EBCI_ERR_SHORT, (uint32_t)d, detail);
    }
    uint16_t len = ebci_rd16(buf + 4);
    if (d != (size_t)len + EBCI_FRAME_OVERHEAD_BYTES) {
        return frame_reject(EBCI_ERR_LEN, (uint32_t)d, detail);
    }
    uint32_t crc = ebci_crc32_update(0, buf, d - EBCI_FRAME_CRC_BYTES);
    if (crc != ebci_rd32(buf + d - EBCI_FRAME_CRC_BYTES)) {
        return frame_reject(EBCI_ERR_CRC, crc, detail);
    }
    frame->type = buf[0];
    frame->flags = buf[1];
    frame->seq = ebci_rd16(buf + 2);
    frame->len = len;
    frame->body = buf + EBCI_FRAME_HEADER_BYTES;
    return frame_reject(EBCI_OK, 0, detail);
}
