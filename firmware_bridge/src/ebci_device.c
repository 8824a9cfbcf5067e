/* The device side of the HIL link: frames in, one reply per request, errors accounted.
 *
 * PROTOCOL FILE: the wire protocol has two owners, firmware_bridge/ (this C) and
 * edgebci/hil/frames.py (Python). Change both, then regenerate tests/data/golden_frames.txt
 * with tests/data/make_golden_frames.py: the golden frames are decoded by both test suites.
 *
 * Portable: the board comes in through ebci/ebci_hal.h. Requests are served from a table, so a
 * new message is one handler and one row in k_handlers.
 *
 * Streaming keeps the link's stop-and-wait: the host retransmits a chunk with the same seq when a
 * reply is lost, so the device answers a repeat of the chunk it just filtered from a copy of its
 * reply (filtering it twice would corrupt the filter state), and refuses any other chunk that does
 * not start at the next sample (ERROR STREAM, detail = the sample it expects): no sample is lost
 * or doubled without the host knowing.
 */
#include <string.h>

#include "ebci_frontend.h"
#include "ebci_model.h"

#include "ebci/ebci_decoder.h"
#include "ebci/ebci_device.h"
#include "ebci/ebci_frame.h"
#include "ebci/ebci_hal.h"
#include "ebci/ebci_protocol.h"

#ifndef EBCI_BUILD
#define EBCI_BUILD "unknown"
#endif

#if EBCI_MODEL_N_CH > 255 || EBCI_MODEL_N_CLASSES > 255 || EBCI_MODEL_N_SAMP > 65535 || EBCI_FRONTEND_IN_SHIFT > 255
#error "the WINDOW and RESULT headers carry n_ch and n_classes in a u8 and n_samp in a u16"
#endif
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "WINDOW samples are read in place as int16 LE: a big-endian port must swap them first"
#endif

#define EBCI_MAX(a, b) ((a) > (b) ? (a) : (b))
/* The receive buffer holds exactly one WINDOW frame, or one STREAM chunk of a whole window, as
 * COBS bytes; it is decoded in place. */
#define EBCI_RX_BODY_MAX_BYTES \
    EBCI_MAX(EBCI_WINDOW_BODY_BYTES(EBCI_MODEL_N_CH, EBCI_MODEL_N_SAMP), \
             EBCI_CHUNK_BODY_BYTES(EBCI_MODEL_N_CH, EBCI_MODEL_N_SAMP))
#define EBCI_RX_MAX_BYTES EBCI_COBS_MAX_BYTES(EBCI_FRAME_OVERHEAD_BYTES + EBCI_RX_BODY_MAX_BYTES)
#define EBCI_RESULT_MAX_BYTES (EBCI_RESULT_FIXED_BYTES + 4u * EBCI_MODEL_N_CLASSES)
#define EBCI_STREAMR_MAX_BYTES (EBCI_STREAMR_FIXED_BYTES + 4u * EBCI_MODEL_N_CLASSES)
#define EBCI_STATS_MAX_BYTES (EBCI_STATS_FIXED_BYTES + 4u * EBCI_ERROR_CODE_COUNT)
#define EBCI_TX_BODY_MAX_BYTES \
    EBCI_MAX(EBCI_MAX(EBCI_INFO_MAX_BYTES, EBCI_STREAMR_MAX_BYTES), EBCI_MAX(EBCI_RESULT_MAX_BYTES, EBCI_STATS_MAX_BYTES))
#define EBCI_NO_STREAM 0xFFFFFFFFu

_Static_assert((EBCI_FRAME_HEADER_BYTES + EBCI_WINDOW_HEADER_BYTES) % 2u == 0u,
               "WINDOW samples must land 2-byte aligned in the receive buffer");
_Static_assert((EBCI_FRAME_HEADER_BYTES + EBCI_STREAM_HEADER_BYTES) % 2u == 0u,
               "STREAM samples must land 2-byte aligned in the receive buffer");

/* Declared as int16 so the samples, which land at an even offset after the in-place COBS
 * decode, are read through their own type: no copy of the window, no aliasing games. */
static int16_t g_rx_store[(EBCI_RX_MAX_BYTES + 1u) / 2u];
static uint8_t *const g_rx = (uint8_t *)g_rx_store;
static uint8_t g_tx_body[EBCI_TX_BODY_MAX_BYTES];
static uint8_t g_tx_wire[EBCI_FRAME_WIRE_MAX_BYTES(EBCI_TX_BODY_MAX_BYTES)];
static float g_scores[EBCI_MODEL_N_CLASSES];

/* The last STREAMR, to answer a retransmitted chunk without filtering it twice. */
static struct {
    uint32_t first_sample;
    uint16_t n_samp;
    size_t len;           /* 0: nothing to repeat */
    uint8_t body[EBCI_STREAMR_MAX_BYTES];
} g_last_chunk;

/* The last RESULT: a WINDOW resent with the same seq (our reply was slow or lost) is answered from it, not
 * decoded again. Each decode of a repeat would queue behind the first, and on a slow or busy link the
 * retransmissions would pile up faster than they are answered. */
static struct {
    uint16_t seq;
    uint16_t req_len;
    size_t len;           /* 0: nothing to repeat */
    uint8_t body[EBCI_RESULT_MAX_BYTES];
} g_last_result;

static struct {
    size_t n_rx;          /* bytes buffered for the current frame */
    uint32_t n_dropped;   /* bytes past the buffer: the frame is discarded as OVERSIZE */
    uint32_t frames_ok;
    uint32_t errors[EBCI_ERROR_CODE_COUNT];
} g_dev;

/* A handler writes its reply body into g_tx_body; on failure it returns the status and sets
 * *detail for the ERROR frame. */
typedef ebci_status_t (*ebci_handler_fn)(const ebci_frame_t *req, size_t *body_len, uint32_t *detail);

static void send_frame(uint8_t type, uint8_t flags, uint16_t seq, const uint8_t *body, size_t len, uint8_t *wire,
                       size_t cap)
{
    ebci_frame_t frame = { type, flags, seq, (uint16_t)len, body };
    size_t n = 0;
    if (ebci_frame_encode(&frame, wire, cap, &n) == EBCI_OK) {   /* buffers are sized so it always fits */
        ebci_serial_write(wire, n);
        ebci_serial_flush();
    }
}

static void send_error(uint16_t seq, uint8_t flags, ebci_status_t status, uint32_t detail, uint32_t raw_len)
{
    ebci_error_t error = { ebci_status_wire_code(status), detail, raw_len };
    uint8_t body[EBCI_ERROR_BODY_BYTES];
    size_t n = 0;
    if (error.code >= 1u && error.code <= EBCI_ERROR_CODE_COUNT) {
        g_dev.errors[error.code - 1u]++;
    }
    (void)ebci_error_pack(&error, body, sizeof body, &n);
    send_frame(EBCI_MSG_ERROR, flags, seq, body, n, g_tx_wire, sizeof g_tx_wire);
}

static ebci_status_t handle_hello(const ebci_frame_t *req, size_t *body_len, uint32_t *detail)
{
    const ebci_hal_info_t *hal = ebci_hal_info();
    ebci_info_t info = {
        .proto_version = EBCI_PROTO_VERSION,
        .timer_src = hal->timer_src,
        .n_ch = EBCI_MODEL_N_CH,
        .n_classes = EBCI_MODEL_N_CLASSES,
        .n_samp = EBCI_MODEL_N_SAMP,
        .fs_hz = (uint16_t)(EBCI_MODEL_FS_HZ),
        .rx_max = EBCI_RX_MAX_BYTES,
        .cpu_hz = hal->cpu_hz,
        .timer_hz = hal->timer_hz,
        .stack_size = ebci_stack_size(),
        .stack_used = ebci_stack_used(),
        .arena_bytes = EBCI_MODEL_ARENA_BYTES,
        .workspace_bytes = EBCI_MODEL_WORKSPACE_BYTES,
        .board = hal->board,
        .cpu = hal->cpu,
        .build = EBCI_BUILD,
        .model_id = EBCI_MODEL_ID,
    };
    (void)req;
    (void)detail;
    return ebci_info_pack(&info, g_tx_body, sizeof g_tx_body, body_len);
}

static ebci_status_t handle_window(const ebci_frame_t *req, size_t *body_len, uint32_t *detail)
{
    ebci_window_t window;
    ebci_status_t status = ebci_window_unpack(req->body, req->len, &window, detail);
    if (status != EBCI_OK) {
        return status;
    }
    if (window.n_ch != EBCI_MODEL_N_CH || window.n_samp != EBCI_MODEL_N_SAMP) {
        return EBCI_ERR_SHAPE;
    }
    if (g_last_result.len != 0 && req->seq == g_last_result.seq && req->len == g_last_result.req_len) {
        memcpy(g_tx_body, g_last_result.body, g_last_result.len);   /* a retransmission: repeat the reply */
        *body_len = g_last_result.len;
        return EBCI_OK;
    }
    const int16_t *x = (const int16_t *)(const void *)window.samples_le;
    ebci_ticks_reset();
    uint64_t t0 = ebci_ticks_read();
    status = ebci_decoder_run(x, g_scores);
    uint64_t t1 = ebci_ticks_read();
    g_last_result.len = 0;
    if (status != EBCI_OK) {
        *detail = ebci_decoder_error_detail();
        return status;
    }
    ebci_result_t result = {
        .cls = (uint8_t)ebci_scores_argmax(g_scores, EBCI_MODEL_N_CLASSES),
        .n_classes = EBCI_MODEL_N_CLASSES,
        .ticks = t1 - t0,
        .stack_used = ebci_stack_used(),
        .scores = g_scores,
    };
    status = ebci_result_pack(&result, g_tx_body, sizeof g_tx_body, body_len);
    if (status == EBCI_OK && *body_len <= sizeof g_last_result.body) {
        memcpy(g_last_result.body, g_tx_body, *body_len);
        g_last_result.len = *body_len;
        g_last_result.seq = req->seq;
        g_last_result.req_len = req->len;
    }
    return status;
}

static ebci_status_t handle_stream_start(const ebci_frame_t *req, size_t *body_len, uint32_t *detail)
{
    uint32_t hop = 0;
    uint8_t mode = 0;
    ebci_status_t status = ebci_stream_start_unpack(req->body, req->len, &hop, &mode, detail);
    if (status != EBCI_OK) {
        return status;
    }
    if (ebci_stream_start(hop, (ebci_stream_mode_t)mode) != EBCI_OK) {
        *detail = hop == 0u ? 0u : 0x80000000u | mode;   /* a zero hop, or bit 31 and the unknown mode */
        return EBCI_ERR_SHAPE;
    }
    g_last_chunk.len = 0;
    ebci_started_t started = {
        .hop_samples = hop,
        .n_samp = EBCI_MODEL_N_SAMP,
        .n_ch = EBCI_MODEL_N_CH,
        .in_shift = EBCI_FRONTEND_IN_SHIFT,
        .ring_bytes = (uint32_t)((sizeof(int32_t) + sizeof(int16_t)) * EBCI_MODEL_N_CH * EBCI_MODEL_N_SAMP),
        .mode = mode,
    };
    return ebci_started_pack(&started, g_tx_body, sizeof g_tx_body, body_len);
}

/* crc32 of the filter output of stream samples [first, first + n), int32 LE [n][n_ch]. */
static uint32_t filtered_crc(uint32_t first, uint32_t n)
{
    uint32_t crc = 0;
    for (uint32_t i = 0; i < n; i++) {
        const int32_t *row = ebci_stream_filtered(first + i);   /* n <= window: every row is in the ring */
        if (row != NULL) {
            crc = ebci_crc32_update(crc, (const uint8_t *)row, sizeof(int32_t) * EBCI_MODEL_N_CH);
        }
    }
    return crc;
}

static ebci_status_t handle_stream(const ebci_frame_t *req, size_t *body_len, uint32_t *detail)
{
    ebci_chunk_t chunk;
    ebci_status_t status = ebci_chunk_unpack(req->body, req->len, &chunk, detail);
    if (status != EBCI_OK) {
        return status;
    }
    if (ebci_stream_hop() == 0u) {
        *detail = EBCI_NO_STREAM;
        return EBCI_ERR_STREAM;
    }
    uint32_t next = ebci_stream_n_samples();
    if (g_last_chunk.len != 0 && chunk.first_sample == g_last_chunk.first_sample &&
        chunk.n_samp == g_last_chunk.n_samp && next == chunk.first_sample + chunk.n_samp) {
        memcpy(g_tx_body, g_last_chunk.body, g_last_chunk.len);   /* our reply was lost: repeat it */
        *body_len = g_last_chunk.len;
        return EBCI_OK;
    }
    if (chunk.first_sample != next) {
        *detail = next;
        return EBCI_ERR_STREAM;
    }
    if (chunk.n_ch != EBCI_MODEL_N_CH || chunk.n_samp == 0u || chunk.n_samp > ebci_stream_hop() ||
        chunk.n_samp > EBCI_MODEL_N_SAMP) {
        *detail = (uint32_t)chunk.n_ch | ((uint32_t)chunk.n_samp << 8);
        return EBCI_ERR_SHAPE;
    }
    const int16_t *x = (const int16_t *)(const void *)chunk.samples_le;
    int decided = 0;
    uint32_t end_sample = 0;
    ebci_ticks_reset();
    uint64_t t0 = ebci_ticks_read();
    status = ebci_stream_push(x, chunk.n_samp, g_scores, &decided, &end_sample);
    uint64_t t1 = ebci_ticks_read();
    g_last_chunk.len = 0;
    if (status != EBCI_OK) {
        *detail = ebci_decoder_error_detail();
        return status;
    }
    ebci_stream_result_t result = {
        .first_sample = chunk.first_sample,
        .n_samp = chunk.n_samp,
        .decided = (uint8_t)decided,
        .n_classes = EBCI_MODEL_N_CLASSES,
        .filter_crc = filtered_crc(chunk.first_sample, chunk.n_samp),
        .n_saturated = ebci_stream_saturated(),
        .end_sample = end_sample,
        .cls = decided ? (uint8_t)ebci_scores_argmax(g_scores, EBCI_MODEL_N_CLASSES) : 0u,
        .ticks = t1 - t0,
        .stack_used = ebci_stack_used(),
        .scores = decided ? g_scores : NULL,
    };
    status = ebci_stream_result_pack(&result, g_tx_body, sizeof g_tx_body, body_len);
    if (status == EBCI_OK) {
        memcpy(g_last_chunk.body, g_tx_body, *body_len);
        g_last_chunk.len = *body_len;
        g_last_chunk.first_sample = chunk.first_sample;
        g_last_chunk.n_samp = chunk.n_samp;
    }
    return status;
}

static ebci_status_t handle_stats(const ebci_frame_t *req, size_t *body_len, uint32_t *detail)
{
    ebci_stats_t stats = {
        .frames_ok = g_dev.frames_ok,
        .stack_used = ebci_stack_used(),
        .n_counters = EBCI_ERROR_CODE_COUNT,
        .counters = g_dev.errors,
    };
    (void)req;
    (void)detail;
    return ebci_stats_pack(&stats, g_tx_body, sizeof g_tx_body, body_len);
}

static const struct {
    uint8_t type;
    uint8_t reply;
    ebci_handler_fn handle;
} k_handlers[] = {
    { EBCI_MSG_HELLO, EBCI_MSG_INFO, handle_hello },
    { EBCI_MSG_WINDOW, EBCI_MSG_RESULT, handle_window },
    { EBCI_MSG_STREAM_START, EBCI_MSG_STARTED, handle_stream_start },
    { EBCI_MSG_STREAM, EBCI_MSG_STREAMR, handle_stream },
    { EBCI_MSG_STATS, EBCI_MSG_STATSR, handle_stats },
};

static void serve_frame(uint32_t raw_len)
{
    ebci_frame_t req;
    uint32_t detail = 0;
    ebci_status_t status = ebci_frame_decode(g_rx, g_dev.n_rx, &req, &detail);
    if (status != EBCI_OK) {
        send_error(EBCI_SEQ_NONE, EBCI_FLAG_FRAMING, status, detail, raw_len);
        return;
    }
    for (size_t i = 0; i < sizeof k_handlers / sizeof k_handlers[0]; i++) {
        if (k_handlers[i].type != req.type) {
            continue;
        }
        size_t n = 0;
        status = k_handlers[i].handle(&req, &n, &detail);
        if (status != EBCI_OK) {
            send_error(req.seq, 0, status, detail, raw_len);
            return;
        }
        send_frame(k_handlers[i].reply, 0, req.seq, g_tx_body, n, g_tx_wire, sizeof g_tx_wire);
        g_dev.frames_ok++;
        return;
    }
    send_error(req.seq, 0, EBCI_ERR_TYPE, req.type, raw_len);
}

void ebci_device_feed(uint8_t byte)
{
    if (byte != 0) {
        if (g_dev.n_rx < EBCI_RX_MAX_BYTES) {
            g_rx[g_dev.n_rx++] = byte;
        } else {
            g_dev.n_dropped++;
        }
        return;
    }
    uint32_t raw_len = (uint32_t)g_dev.n_rx + g_dev.n_dropped;
    if (g_dev.n_dropped != 0) {
        send_error(EBCI_SEQ_NONE, EBCI_FLAG_FRAMING, EBCI_ERR_OVERSIZE, raw_len, raw_len);
    } else if (g_dev.n_rx != 0) {   /* an empty frame is the host's flush: no reply */
        serve_frame(raw_len);
    }
    g_dev.n_rx = 0;
    g_dev.n_dropped = 0;
}

int ebci_device_run(void)
{
    ebci_hal_init();
    for (;;) {
        int c = ebci_serial_getc();
        if (c < 0) {
            return 0;
        }
        ebci_device_feed((uint8_t)c);
    }
}

void ebci_device_report_fault(uint32_t pc)
{
    /* own buffers: the fault may have hit in the middle of a reply, and a leading 0x00 ends
     * whatever half frame is already on the wire so the host reads this one whole */
    static const uint8_t delimiter = 0;
    static uint8_t wire[EBCI_FRAME_WIRE_MAX_BYTES(EBCI_ERROR_BODY_BYTES)];
    ebci_error_t error = { ebci_status_wire_code(EBCI_ERR_FAULT), pc, 0 };
    uint8_t body[EBCI_ERROR_BODY_BYTES];
    size_t n = 0;
    (void)ebci_error_pack(&error, body, sizeof body, &n);
    ebci_serial_write(&delimiter, 1);
    send_frame(EBCI_MSG_ERROR, EBCI_FLAG_FATAL, EBCI_SEQ_NONE, body, n, wire, sizeof wire);
}

uint32_t ebci_device_rx_max(void)
{
    return EBCI_RX_MAX_BYTES;
}
