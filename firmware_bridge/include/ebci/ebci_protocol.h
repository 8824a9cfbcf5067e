/* Messages of the HIL link: type codes, flags and the body of each message.
 *
 * PROTOCOL FILE: the wire protocol has two owners, firmware_bridge/ (this C) and
 * edgebci/hil/frames.py (Python). Change both, then regenerate tests/data/golden_frames.txt
 * with tests/data/make_golden_frames.py: the golden frames are decoded by both test suites.
 *
 * The host asks, the device answers with type | 0x80 (or ERROR) and the request's seq; the
 * device never speaks first, except a FAULT report just before it halts. All fields are LE.
 *
 *   HELLO  0x01 (empty)  -> INFO 0x81:
 *       u8 proto_version, u8 timer_src, u8 n_ch, u8 n_classes, u16 n_samp, u16 fs_hz,
 *       u32 rx_max, u32 cpu_hz, u32 timer_hz, u32 stack_size, u32 stack_used,
 *       u32 arena_bytes, u32 workspace_bytes, then NUL-terminated board, cpu, build, model_id
 *   WINDOW 0x02: u8 n_ch, u8 reserved, u16 n_samp, int16 samples[n_samp][n_ch] (sample-major)
 *       -> RESULT 0x82: u8 class, u8 n_classes, u16 reserved, u32 ticks_lo, u32 ticks_hi,
 *          u32 stack_used, f32 scores[n_classes]
 *   STREAM_START 0x03: u32 hop_samples, u8 mode (0 from rest, 1 continuous), u8 reserved[3]
 *       -> STARTED 0x83: u32 hop_samples, u16 n_samp (window), u8 n_ch, u8 in_shift, u32 ring_bytes,
 *          u8 mode, u8 reserved[3]
 *       (filter at rest, ring empty, sample counter 0: a new stream; mode: what a decision feeds the
 *        model, the window filtered from rest as in training or the continuously filtered samples)
 *   STREAM 0x04: u32 first_sample, u8 n_ch, u8 reserved, u16 n_samp, int16 samples[n_samp][n_ch]
 *       (1 <= n_samp <= min(hop, window); first_sample must be the next sample the device expects;
 *        the same chunk sent again right after is answered from a copy, not filtered twice)
 *       -> STREAMR 0x84: u32 first_sample, u16 n_samp, u8 decided, u8 n_classes, u32 filter_crc,
 *          u32 n_saturated, u32 end_sample, u8 class, u8 reserved[3], u32 ticks_lo, u32 ticks_hi,
 *          u32 stack_used, f32 scores[n_classes]
 *          filter_crc: crc32 of this chunk's filter output, int32 LE [n_samp][n_ch] (uV * 2^in_shift);
 *          decided: 1 when a window closed in this chunk (samples [end_sample - window, end_sample)),
 *          then class and scores are the decision; ticks cover filtering the chunk and the model
 *   STATS  0x05 (empty)  -> STATSR 0x85: u32 frames_ok, u32 stack_used, u8 n_counters,
 *       u8 reserved[3], u32 counters[n_counters] (counters[i] counts ERROR code i + 1)
 *   ERROR  0x7F: u8 code, u8 reserved, u32 detail, u32 raw_len (COBS bytes the device saw
 *       before the delimiter, so the host can tell whether an error is about its own frame)
 *
 * ERROR flags: bit0 FRAMING (the frame was unreadable, seq is 0xFFFF), bit1 FATAL (FAULT: the
 * device halted). Codes are -ebci_status_t (ebci/ebci_status.h). Type codes
 * 0x06..0x7E are free for later messages; an unknown type gets ERROR TYPE.
 */
#ifndef EBCI_PROTOCOL_H
#define EBCI_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "ebci/ebci_status.h"

#define EBCI_PROTO_VERSION 2u

enum {
    EBCI_MSG_HELLO = 0x01,
    EBCI_MSG_WINDOW = 0x02,
    EBCI_MSG_STREAM_START = 0x03,
    EBCI_MSG_STREAM = 0x04,
    EBCI_MSG_STATS = 0x05,
    EBCI_MSG_ERROR = 0x7F,
    EBCI_MSG_INFO = 0x81,
    EBCI_MSG_RESULT = 0x82,
    EBCI_MSG_STARTED = 0x83,
    EBCI_MSG_STREAMR = 0x84,
    EBCI_MSG_STATSR = 0x85,
};
#define EBCI_MSG_REPLY_BIT 0x80u

#define EBCI_FLAG_FRAMING 0x01u
#define EBCI_FLAG_FATAL 0x02u
#define EBCI_SEQ_NONE 0xFFFFu

enum { EBCI_TIMER_DWT = 0, EBCI_TIMER_SYSTICK = 1, EBCI_TIMER_OS_NS = 2 };

#define EBCI_INFO_FIXED_BYTES 36u
#define EBCI_INFO_STRING_MAX 96u   /* per string, NUL included; longer strings are cut */
#define EBCI_INFO_MAX_BYTES (EBCI_INFO_FIXED_BYTES + 4u * EBCI_INFO_STRING_MAX)
#define EBCI_WINDOW_HEADER_BYTES 4u
#define EBCI_RESULT_FIXED_BYTES 16u
#define EBCI_STATS_FIXED_BYTES 12u
#define EBCI_ERROR_BODY_BYTES 10u
#define EBCI_STREAM_START_BYTES 8u
#define EBCI_STARTED_BYTES 16u
#define EBCI_STREAM_HEADER_BYTES 8u
#define EBCI_STREAMR_FIXED_BYTES 36u

typedef struct {
    uint8_t proto_version;
    uint8_t timer_src;          /* EBCI_TIMER_* */
    uint8_t n_ch;
    uint8_t n_classes;
    uint16_t n_samp;
    uint16_t fs_hz;
    uint32_t rx_max;            /* receive buffer, COBS bytes before the delimiter */
    uint32_t cpu_hz;
    uint32_t timer_hz;          /* rate of the ticks in RESULT */
    uint32_t stack_size;
    uint32_t stack_used;        /* painted high-water mark, bytes */
    uint32_t arena_bytes;
    uint32_t workspace_bytes;
    const char *board;
    const char *cpu;
    const char *build;
    const char *model_id;
} ebci_info_t;

typedef struct {
    uint8_t n_ch;
    uint16_t n_samp;
    const uint8_t *samples_le;  /* int16 LE [n_samp][n_ch], inside the received body */
} ebci_window_t;

typedef struct {
    uint32_t hop_samples;
    uint16_t n_samp;            /* window */
    uint8_t n_ch;
    uint8_t in_shift;           /* fractional bits of the filter output */
    uint32_t ring_bytes;
    uint8_t mode;               /* ebci_stream_mode_t */
} ebci_started_t;

typedef struct {
    uint32_t first_sample;
    uint8_t n_ch;
    uint16_t n_samp;
    const uint8_t *samples_le;  /* int16 LE [n_samp][n_ch], inside the received body */
} ebci_chunk_t;

typedef struct {
    uint32_t first_sample;
    uint16_t n_samp;
    uint8_t decided;
    uint8_t n_classes;
    uint32_t filter_crc;
    uint32_t n_saturated;
    uint32_t end_sample;
    uint8_t cls;
    uint64_t ticks;
    uint32_t stack_used;
    const float *scores;        /* n_classes */
} ebci_stream_result_t;

typedef struct {
    uint8_t cls;
    uint8_t n_classes;
    uint64_t ticks;
    uint32_t stack_used;
    const float *scores;        /* n_classes */
} ebci_result_t;

typedef struct {
    uint32_t frames_ok;
    uint32_t stack_used;
    uint8_t n_counters;
    const uint32_t *counters;   /* n_counters; counters[i] counts ERROR code i + 1 */
} ebci_stats_t;

typedef struct {
    uint8_t code;               /* ebci_status_wire_code(status) */
    uint32_t detail;
    uint32_t raw_len;
} ebci_error_t;

/* Packers write a body into out (cap bytes) and set *n_out; EBCI_ERR_ARG if it does not fit. */
ebci_status_t ebci_info_pack(const ebci_info_t *info, uint8_t *out, size_t cap, size_t *n_out);
ebci_status_t ebci_result_pack(const ebci_result_t *result, uint8_t *out, size_t cap, size_t *n_out);
ebci_status_t ebci_stats_pack(const ebci_stats_t *stats, uint8_t *out, size_t cap, size_t *n_out);
ebci_status_t ebci_error_pack(const ebci_error_t *error, uint8_t *out, size_t cap, size_t *n_out);

ebci_status_t ebci_started_pack(const ebci_started_t *started, uint8_t *out, size_t cap, size_t *n_out);
ebci_status_t ebci_stream_result_pack(const ebci_stream_result_t *result, uint8_t *out, size_t cap, size_t *n_out);

/* STREAM_START: *hop gets hop_samples, *mode the mode byte; EBCI_ERR_SHAPE (detail = body length)
 * unless 8 bytes. */
ebci_status_t ebci_stream_start_unpack(const uint8_t *body, size_t len, uint32_t *hop, uint8_t *mode,
                                       uint32_t *detail);

/* STREAM: EBCI_ERR_SHAPE when the body is shorter than its header or its length disagrees with
 * n_ch * n_samp; *detail then gets n_ch | n_samp << 8 (the body length if under 8 bytes). */
ebci_status_t ebci_chunk_unpack(const uint8_t *body, size_t len, ebci_chunk_t *chunk, uint32_t *detail);

/* EBCI_ERR_SHAPE when the body is shorter than its header or its length disagrees with
 * n_ch * n_samp; *detail then gets n_ch | n_samp << 8 (the body length if under 4 bytes). */
ebci_status_t ebci_window_unpack(const uint8_t *body, size_t len, ebci_window_t *window, uint32_t *detail);

/* The window's body size for n_ch x n_samp samples. */
#define EBCI_WINDOW_BODY_BYTES(n_ch, n_samp) (EBCI_WINDOW_HEADER_BYTES + 2u * (size_t)(n_ch) * (size_t)(n_samp))
/* A chunk's body size for n_ch x n_samp samples. */
#define EBCI_CHUNK_BODY_BYTES(n_ch, n_samp) (EBCI_STREAM_HEADER_BYTES + 2u * (size_t)(n_ch) * (size_t)(n_samp))

#endif /* EBCI_PROTOCOL_H */
