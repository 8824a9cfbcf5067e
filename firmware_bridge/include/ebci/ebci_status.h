/* ebci_status_t: the one status enum of firmware_bridge/.
 *
 * PROTOCOL FILE: the wire protocol has two owners, firmware_bridge/ (this C) and
 * edgebci/hil/frames.py (Python). Change both, then regenerate tests/data/golden_frames.txt
 * with tests/data/make_golden_frames.py: the golden frames are decoded by both test suites.
 *
 * Errors are negative; the ERROR frame carries the code as a positive byte (-status), so
 * EBCI_ERR_CRC = -4 travels as code 4 (edgebci.hil.frames.ErrorCode.CRC).
 */
#ifndef EBCI_STATUS_H
#define EBCI_STATUS_H

#include <stdint.h>

typedef enum {
    EBCI_OK = 0,
    /* framing: the bytes before a 0x00 delimiter are not a frame (ERROR flags bit0 set) */
    EBCI_ERR_COBS = -1,       /* invalid COBS encoding */
    EBCI_ERR_SHORT = -2,      /* shorter than header + crc */
    EBCI_ERR_LEN = -3,        /* header len does not match the frame size (truncated) */
    EBCI_ERR_CRC = -4,        /* crc32 mismatch (corrupted) */
    EBCI_ERR_OVERSIZE = -5,   /* frame exceeded the receive buffer; discarded up to the delimiter */
    /* request: a valid frame the device cannot serve (ERROR echoes the request's seq) */
    EBCI_ERR_TYPE = -6,       /* unknown message type */
    EBCI_ERR_SHAPE = -7,      /* WINDOW n_ch / n_samp / body length do not match the model */
    EBCI_ERR_MODEL = -8,      /* ebci_model_run returned non-zero or a kernel raised an error */
    EBCI_ERR_WORKSPACE = -9,  /* a kernel asked for more workspace than reserved, or freed out of order */
    EBCI_ERR_FAULT = -10,     /* HardFault: the device halted (ERROR flags bit1 set, detail = PC) */
    EBCI_ERR_STREAM = -11,    /* STREAM before STREAM_START, or a chunk that does not start at the next
                                 sample the device expects (detail = that sample; 0xFFFFFFFF: no stream) */
    /* local only, never on the wire */
    EBCI_ERR_ARG = -32,       /* bad argument or output buffer too small */
} ebci_status_t;

/* Wire codes 1..EBCI_ERROR_CODE_COUNT; STATSR carries one counter per code. */
#define EBCI_ERROR_CODE_COUNT 11u

static inline uint8_t ebci_status_wire_code(ebci_status_t status)
{
    return (uint8_t)(-(int)status);
}

#endif /* EBCI_STATUS_H */
