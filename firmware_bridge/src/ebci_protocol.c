/* Message bodies of the HIL link (layouts in ebci/ebci_protocol.h).
 *
 * PROTOCOL FILE: the wire protocol has two owners, firmware_bridge/ (this C) and
 * edgebci/hil/frames.py (Python). Change both, then regenerate tests/data/golden_frames.txt
 * with tests/data/make_golden_frames.py: the golden frames are decoded by both test suites.
 *
 * Portable C99, no model or board dependency: tests/c/ builds it alone with the host gcc.
 */
#include <string.h>

#include "ebci/ebci_frame.h"
#include "ebci/ebci_protocol.h"

static ebci_status_t body_done(size_t n, size_t cap, size_t *n_out)
{
    if (n > cap) {
        return EBCI_ERR_ARG;
    }
    *n_out = n;
    return EBCI_OK;
}

/* Copy s with its NUL, cut to EBCI_INFO_STRING_MAX bytes; returns bytes written. */
static size_t put_string(uint8_t *out, const char *s)
{
    size_t i = 0;
    if (s != NULL) {
        while (s[i] != '\0' && i + 1u < EBCI_INFO_STRING_MAX) {
            out[i] = (uint8_t)s[i];
            i++;
        }
    }
    out[i] = 0;
    return i + 1u;
}

ebci_status_t ebci_info_pack(const ebci_info_t *info, uint8_t *out, size_t cap, size_t *n_out)
{
    if (cap < EBCI_INFO_MAX_BYTES) {
        return EBCI_ERR_ARG;   /* checked up front so the strings need no bounds checks */
    }
    out[0] = info->proto_version;
    out[1] = info->timer_src;
    out[2] = info->n_ch;
    out[3] = info->n_classes;
    ebci_wr16(out + 4, info->n_samp);
    ebci_wr16(out + 6, info->fs_hz);
    const uint32_t words[] = {
        info->rx_max, info->cpu_hz, info->timer_hz, info->stack_size,
        info->stack_used, info->arena_bytes, info->workspace_bytes,
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        ebci_wr32(out + 8 + 4 * i, words[i]);
    }
    size_t n = EBCI_INFO_FIXED_BYTES;
    n += put_string(out + n, info->board);
    n += put_string(out + n, info->cpu);
    n += put_string(out + n, info->build);
    n += put_string(out + n, info->model_id);
    return body_done(n, cap, n_out);
}

ebci_status_t ebci_result_pack(const ebci_result_t *result, uint8_t *out, size_t cap, size_t *n_out)
{
    size_t n = EBCI_RESULT_FIXED_BYTES + 4u * result->n_classes;
    if (n > cap) {
        return EBCI_ERR_ARG;
    }
    out[0] = result->cls;
    out[1] = result->n_classes;
    ebci_wr16(out + 2, 0);
    ebci_wr32(out + 4, (uint32_t)result->ticks);
    ebci_wr32(out + 8, (uint32_t)(result->ticks >> 32));
    ebci_wr32(out + 12, result->stack_used);
    for (uint8_t k = 0; k < result->n_classes; k++) {
        uint32_t bits;
        memcpy(&bits, &result->scores[k], sizeof bits);
        ebci_wr32(out + EBCI_RESULT_FIXED_BYTES + 4u * k, bits);
    }
    return body_done(n, cap, n_out);
}

ebci_status_t ebci_stats_pack(const ebci_stats_t *stats, uint8_t *out, size_t cap, size_t *n_out)
{
    size_t n = EBCI_STATS_FIXED_BYTES + 4u * stats->n_counters;
    if (n > cap) {
        return EBCI_ERR_ARG;
    }
    ebci_wr32(out, stats->frames_ok);
    ebci_wr32(out + 4, stats->stack_used);
    out[8] = stats->n_counters;
    out[9] = out[10] = out[11] = 0;
    for (uint8_t i = 0; i < stats->n_counters; i++) {
        ebci_wr32(out + EBCI_STATS_FIXED_BYTES + 4u * i, stats->counters[i]);
    }
    return body_done(n, cap, n_out);
}

ebci_status_t ebci_error_pack(const ebci_error_t *error, uint8_t *out, size_t cap, size_t *n_out)
{
    if (cap < EBCI_ERROR_BODY_BYTES) {
        return EBCI_ERR_ARG;
    }
    out[0] = error->code;
    out[1] = 0;
    ebci_wr32(out + 2, error->detail);
    ebci_wr32(out + 6, error->raw_len);
    return body_done(EBCI_ERROR_BODY_BYTES, cap, n_out);
}

ebci_status_t ebci_window_unpack(const uint8_t *body, size_t len, ebci_window_t *window, uint32_t *detail)
{
    if (len < EBCI_WINDOW_HEADER_BYTES) {
        *detail = (uint32_t)len;
        return EBCI_ERR_SHAPE;
    }
    uint8_t n_ch = body[0];
    uint16_t n_samp = ebci_rd16(body + 2);
    *detail = (uint32_t)n_ch | ((uint32_t)n_samp << 8);
    if (len != EBCI_WINDOW_BODY_BYTES(n_ch, n_samp)) {
        return EBCI_ERR_SHAPE;
    }
    window->n_ch = n_ch;
    window->n_samp = n_samp;
    window->samples_le = body + EBCI_WINDOW_HEADER_BYTES;
    return EBCI_OK;
}

ebci_status_t ebci_started_pack(const ebci_started_t *started, uint8_t *out, size_t cap, size_t *n_out)
{
    if (cap < EBCI_STARTED_BYTES) {
        return EBCI_ERR_ARG;
    }
    ebci_wr32(out, started->hop_samples);
    ebci_wr16(out + 4, started->n_samp);
    out[6] = started->n_ch;
    out[7] = started->in_shift;
    ebci_wr32(out + 8, started->ring_bytes);
    out[12] = started->mode;
    out[13] = out[14] = out[15] = 0;
    return body_done(EBCI_STARTED_BYTES, cap, n_out);
}

ebci_status_t ebci_stream_result_pack(const ebci_stream_result_t *result, uint8_t *out, size_t cap, size_t *n_out)
{
    size_t n = EBCI_STREAMR_FIXED_BYTES + 4u * result->n_classes;
    if (n > cap) {
        return EBCI_ERR_ARG;
    }
    ebci_wr32(out, result->first_sample);
    ebci_wr16(out + 4, result->n_samp);
    out[6] = result->decided;
    out[7] = result->n_classes;
    ebci_wr32(out + 8, result->filter_crc);
    ebci_wr32(out + 12, result->n_saturated);
    ebci_wr32(out + 16, result->end_sample);
    out[20] = result->cls;
    out[21] = out[22] = out[23] = 0;
    ebci_wr32(out + 24, (uint32_t)result->ticks);
    ebci_wr32(out + 28, (uint32_t)(result->ticks >> 32));
    ebci_wr32(out + 32, result->stack_used);
    for (uint8_t k = 0; k < result->n_classes; k++) {
        uint32_t bits = 0;
        if (result->scores != NULL) {
            memcpy(&bits, &result->scores[k], sizeof bits);
        }
        ebci_wr32(out + EBCI_STREAMR_FIXED_BYTES + 4u * k, bits);
    }
    return body_done(n, cap, n_out);
}

ebci_status_t ebci_stream_start_unpack(const uint8_t *body, size_t len, uint32_t *hop, uint8_t *mode,
                                       uint32_t *detail)
{
    if (len != EBCI_STREAM_START_BYTES) {
        *detail = (uint32_t)len;
        return EBCI_ERR_SHAPE;
    }
    *hop = ebci_rd32(body);
    *mode = body[4];
    return EBCI_OK;
}

ebci_status_t ebci_chunk_unpack(const uint8_t *body, size_t len, ebci_chunk_t *chunk, uint32_t *detail)
{
    if (len < EBCI_STREAM_HEADER_BYTES) {
        *detail = (uint32_t)len;
        return EBCI_ERR_SHAPE;
    }
    uint8_t n_ch = body[4];
    uint16_t n_samp = ebci_rd16(body + 6);
    *detail = (uint32_t)n_ch | ((uint32_t)n_samp << 8);
    if (len != EBCI_CHUNK_BODY_BYTES(n_ch, n_samp)) {
        return EBCI_ERR_SHAPE;
    }
    chunk->first_sample = ebci_rd32(body);
    chunk->n_ch = n_ch;
    chunk->n_samp = n_samp;
    chunk->samples_le = body + EBCI_STREAM_HEADER_BYTES;
    return EBCI_OK;
}
