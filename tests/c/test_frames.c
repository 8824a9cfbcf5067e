/* Golden-frame check of firmware_bridge's frame and message C, built with the host gcc by
 * tests/test_frames_c.py (no model, no board).
 *
 * PROTOCOL: the wire protocol has two owners, firmware_bridge/ (C) and edgebci/hil/frames.py
 * (Python); change both. tests/data/golden_frames.txt is written by the Python side and must be
 * decoded identically, and encoded byte for byte, by the C here.
 *
 * usage: test_frames tests/data/golden_frames.txt
 * prints "ok <name>" or "FAIL <name>: <why>" per frame, then "summary <ok> <failed>"; exit 1
 * if anything failed. Damaged copies of every valid frame (each prefix, each byte changed)
 * must be rejected without touching memory they should not (run it under -fsanitize).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ebci/ebci_frame.h"
#include "ebci/ebci_protocol.h"

#define MAX_TOKENS 48
#define MAX_LINE 32768
#define MAX_BYTES 8192
#define MAX_LIST 1024

typedef struct {
    const char *name;
    char *key[MAX_TOKENS];
    char *value[MAX_TOKENS];
    int n;
} golden_t;

static int report(const golden_t *g, const char *fmt, ...)
{
    va_list ap;
    printf("FAIL %s: ", g->name);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    return 1;
}

static const char *field(const golden_t *g, const char *key)
{
    for (int i = 0; i < g->n; i++) {
        if (strcmp(g->key[i], key) == 0) {
            return g->value[i];
        }
    }
    return NULL;
}

static long long field_int(const golden_t *g, const char *key)
{
    const char *v = field(g, key);
    return v != NULL ? strtoll(v, NULL, 0) : -1;
}

static size_t parse_hex(const char *s, uint8_t *out)
{
    size_t n = 0;
    if (s == NULL || strcmp(s, "-") == 0) {
        return 0;
    }
    for (; s[0] != '\0' && s[1] != '\0' && n < MAX_BYTES; s += 2) {
        char pair[3] = { s[0], s[1], 0 };
        out[n++] = (uint8_t)strtoul(pair, NULL, 16);
    }
    return n;
}

static size_t parse_list(const char *s, long long *out)
{
    size_t n = 0;
    char *end = NULL;
    while (s != NULL && *s != '\0' && n < MAX_LIST) {
        out[n++] = strtoll(s, &end, 0);
        s = (*end == ',') ? end + 1 : end;
    }
    return n;
}

static int same_bytes(const golden_t *g, const char *what, const uint8_t *got, size_t n_got, const uint8_t *want,
                      size_t n_want)
{
    if (n_got != n_want || (n_want != 0 && memcmp(got, want, n_want) != 0)) {
        return report(g, "%s differs (%zu bytes, golden %zu)", what, n_got, n_want);
    }
    return 0;
}

static int check_damaged(const golden_t *g, const uint8_t *wire, size_t n_wire)
{
    uint8_t buf[MAX_BYTES];
    ebci_frame_t frame;
    memcpy(buf, wire, n_wire);
    ebci_status_t st = ebci_frame_decode(buf, n_wire - 1, &frame, NULL);
    long long want = field_int(g, "expect");
    if (st != (ebci_status_t)-want) {
        return report(g, "decoded with status %d, golden expects ERROR code %lld", (int)st, want);
    }
    return 0;
}

/* Every prefix and every changed byte of a valid frame must be rejected, safely. */
static int check_damage_rejected(const golden_t *g, const uint8_t *wire, size_t n_enc)
{
    uint8_t buf[MAX_BYTES];
    ebci_frame_t frame;
    for (size_t cut = 0; cut < n_enc; cut++) {
        memcpy(buf, wire, cut);
        if (cut > 0 && ebci_frame_decode(buf, cut, &frame, NULL) == EBCI_OK) {
            return report(g, "a %zu-byte prefix decoded as a valid frame", cut);
        }
    }
    for (size_t at = 0; at < n_enc; at++) {
        memcpy(buf, wire, n_enc);
        buf[at] ^= 0x40u;
        if (buf[at] == 0) {
            continue;   /* a zero is a delimiter: that is a truncation, covered above */
        }
        if (ebci_frame_decode(buf, n_enc, &frame, NULL) == EBCI_OK) {
            return report(g, "changing byte %zu still decoded as a valid frame", at);
        }
    }
    return 0;
}

static int check_info(const golden_t *g, const uint8_t *body, size_t len)
{
    ebci_info_t info = {
        (uint8_t)field_int(g, "proto_version"), (uint8_t)field_int(g, "timer_src"), (uint8_t)field_int(g, "n_ch"),
        (uint8_t)field_int(g, "n_classes"), (uint16_t)field_int(g, "n_samp"), (uint16_t)field_int(g, "fs_hz"),
        (uint32_t)field_int(g, "rx_max"), (uint32_t)field_int(g, "cpu_hz"), (uint32_t)field_int(g, "timer_hz"),
        (uint32_t)field_int(g, "stack_size"), (uint32_t)field_int(g, "stack_used"),
        (uint32_t)field_int(g, "arena_bytes"), (uint32_t)field_int(g, "workspace_bytes"),
        field(g, "board"), field(g, "cpu"), field(g, "build"), field(g, "model_id"),
    };
    uint8_t out[EBCI_INFO_MAX_BYTES];
    size_t n = 0;
    if (ebci_info_pack(&info, out, sizeof out, &n) != EBCI_OK) {
        return report(g, "ebci_info_pack failed");
    }
    return same_bytes(g, "packed INFO body", out, n, body, len);
}

static int check_result(const golden_t *g, const uint8_t *body, size_t len)
{
    long long bits[MAX_LIST];
    float scores[MAX_LIST];
    size_t n_scores = parse_list(field(g, "scores_bits"), bits);
    for (size_t k = 0; k < n_scores; k++) {
        uint32_t b = (uint32_t)bits[k];
        memcpy(&scores[k], &b, sizeof b);
    }
    ebci_result_t result = { (uint8_t)field_int(g, "cls"), (uint8_t)field_int(g, "n_classes"),
                             (uint64_t)field_int(g, "ticks"), (uint32_t)field_int(g, "stack_used"), scores };
    uint8_t out[MAX_BYTES];
    size_t n = 0;
    if ((size_t)result.n_classes != n_scores || ebci_result_pack(&result, out, sizeof out, &n) != EBCI_OK) {
        return report(g, "ebci_result_pack failed");
    }
    return same_bytes(g, "packed RESULT body", out, n, body, len);
}

static int check_stats(const golden_t *g, const uint8_t *body, size_t len)
{
    long long values[MAX_LIST];
    uint32_t counters[MAX_LIST];
    size_t n_counters = parse_list(field(g, "counters"), values);
    for (size_t i = 0; i < n_counters; i++) {
        counters[i] = (uint32_t)values[i];
    }
    ebci_stats_t stats = { (uint32_t)field_int(g, "frames_ok"), (uint32_t)field_int(g, "stack_used"),
                           (uint8_t)field_int(g, "n_counters"), counters };
    uint8_t out[MAX_BYTES];
    size_t n = 0;
    if ((size_t)stats.n_counters != n_counters || ebci_stats_pack(&stats, out, sizeof out, &n) != EBCI_OK) {
        return report(g, "ebci_stats_pack failed");
    }
    return same_bytes(g, "packed STATSR body", out, n, body, len);
}

static int check_error(const golden_t *g, const uint8_t *body, size_t len)
{
    ebci_error_t error = { (uint8_t)field_int(g, "code"), (uint32_t)field_int(g, "detail"),
                           (uint32_t)field_int(g, "raw_len") };
    uint8_t out[EBCI_ERROR_BODY_BYTES];
    size_t n = 0;
    if (ebci_error_pack(&error, out, sizeof out, &n) != EBCI_OK) {
        return report(g, "ebci_error_pack failed");
    }
    return same_bytes(g, "packed ERROR body", out, n, body, len);
}

static int check_window(const golden_t *g, const uint8_t *body, size_t len)
{
    long long samples[MAX_LIST];
    size_t n_samples = parse_list(field(g, "samples"), samples);
    ebci_window_t window;
    uint32_t detail = 0;
    if (ebci_window_unpack(body, len, &window, &detail) != EBCI_OK) {
        return report(g, "ebci_window_unpack rejected the body (detail %u)", (unsigned)detail);
    }
    if (window.n_ch != field_int(g, "n_ch") || window.n_samp != field_int(g, "n_samp") ||
        (size_t)window.n_ch * window.n_samp != n_samples) {
        return report(g, "window shape %u x %u differs from the golden fields", window.n_ch, window.n_samp);
    }
    for (size_t i = 0; i < n_samples; i++) {
        if ((int16_t)ebci_rd16(window.samples_le + 2 * i) != samples[i]) {
            return report(g, "sample %zu is %d, golden %lld", i, (int16_t)ebci_rd16(window.samples_le + 2 * i),
                          samples[i]);
        }
    }
    if (len > EBCI_WINDOW_HEADER_BYTES && ebci_window_unpack(body, len - 1, &window, &detail) != EBCI_ERR_SHAPE) {
        return report(g, "a window body one byte short was not rejected as SHAPE");
    }
    return 0;
}

static int check_stream_start(const golden_t *g, const uint8_t *body, size_t len)
{
    uint32_t hop = 0, detail = 0;
    uint8_t mode = 0xFF;
    if (ebci_stream_start_unpack(body, len, &hop, &mode, &detail) != EBCI_OK ||
        hop != (uint32_t)field_int(g, "hop_samples") || mode != field_int(g, "mode")) {
        return report(g, "STREAM_START unpacked hop %u mode %u, golden %lld %lld", (unsigned)hop, mode,
                      field_int(g, "hop_samples"), field_int(g, "mode"));
    }
    if (ebci_stream_start_unpack(body, len - 1, &hop, &mode, &detail) != EBCI_ERR_SHAPE) {
        return report(g, "a STREAM_START body one byte short was not rejected as SHAPE");
    }
    return 0;
}

static int check_chunk(const golden_t *g, const uint8_t *body, size_t len)
{
    long long samples[MAX_LIST];
    size_t n_samples = parse_list(field(g, "samples"), samples);
    ebci_chunk_t chunk;
    uint32_t detail = 0;
    if (ebci_chunk_unpack(body, len, &chunk, &detail) != EBCI_OK) {
        return report(g, "ebci_chunk_unpack rejected the body (detail %u)", (unsigned)detail);
    }
    if (chunk.first_sample != (uint32_t)field_int(g, "first_sample") || chunk.n_ch != field_int(g, "n_ch") ||
        chunk.n_samp != field_int(g, "n_samp") || (size_t)chunk.n_ch * chunk.n_samp != n_samples) {
        return report(g, "chunk header (%u, %u x %u) differs from the golden fields", (unsigned)chunk.first_sample,
                      chunk.n_ch, chunk.n_samp);
    }
    for (size_t i = 0; i < n_samples; i++) {
        if ((int16_t)ebci_rd16(chunk.samples_le + 2 * i) != samples[i]) {
            return report(g, "sample %zu differs from golden %lld", i, samples[i]);
        }
    }
    if (ebci_chunk_unpack(body, len - 1, &chunk, &detail) != EBCI_ERR_SHAPE) {
        return report(g, "a chunk body one byte short was not rejected as SHAPE");
    }
    return 0;
}

static int check_started(const golden_t *g, const uint8_t *body, size_t len)
{
    ebci_started_t started = { (uint32_t)field_int(g, "hop_samples"), (uint16_t)field_int(g, "n_samp"),
                               (uint8_t)field_int(g, "n_ch"), (uint8_t)field_int(g, "in_shift"),
                               (uint32_t)field_int(g, "ring_bytes"), (uint8_t)field_int(g, "mode") };
    uint8_t out[EBCI_STARTED_BYTES];
    size_t n = 0;
    if (ebci_started_pack(&started, out, sizeof out, &n) != EBCI_OK) {
        return report(g, "ebci_started_pack failed");
    }
    return same_bytes(g, "packed STARTED body", out, n, body, len);
}

static int check_stream_result(const golden_t *g, const uint8_t *body, size_t len)
{
    long long bits[MAX_LIST];
    float scores[MAX_LIST];
    size_t n_scores = parse_list(field(g, "scores_bits"), bits);
    for (size_t k = 0; k < n_scores; k++) {
        uint32_t b = (uint32_t)bits[k];
        memcpy(&scores[k], &b, sizeof b);
    }
    ebci_stream_result_t result = {
        (uint32_t)field_int(g, "first_sample"), (uint16_t)field_int(g, "n_samp"), (uint8_t)field_int(g, "decided"),
        (uint8_t)field_int(g, "n_classes"), (uint32_t)field_int(g, "filter_crc"),
        (uint32_t)field_int(g, "n_saturated"), (uint32_t)field_int(g, "end_sample"), (uint8_t)field_int(g, "cls"),
        (uint64_t)field_int(g, "ticks"), (uint32_t)field_int(g, "stack_used"), scores,
    };
    uint8_t out[MAX_BYTES];
    size_t n = 0;
    if ((size_t)result.n_classes != n_scores || ebci_stream_result_pack(&result, out, sizeof out, &n) != EBCI_OK) {
        return report(g, "ebci_stream_result_pack failed");
    }
    return same_bytes(g, "packed STREAMR body", out, n, body, len);
}

static int check_body(const golden_t *g, uint8_t type, const uint8_t *body, size_t len)
{
    switch (type) {
    case EBCI_MSG_STREAM_START:
        return check_stream_start(g, body, len);
    case EBCI_MSG_STREAM:
        return check_chunk(g, body, len);
    case EBCI_MSG_STARTED:
        return check_started(g, body, len);
    case EBCI_MSG_STREAMR:
        return check_stream_result(g, body, len);
    case EBCI_MSG_INFO:
        return check_info(g, body, len);
    case EBCI_MSG_RESULT:
        return check_result(g, body, len);
    case EBCI_MSG_STATSR:
        return check_stats(g, body, len);
    case EBCI_MSG_ERROR:
        return check_error(g, body, len);
    case EBCI_MSG_WINDOW:
        return check_window(g, body, len);
    default:
        return 0;   /* HELLO, STATS: empty bodies, checked as bytes */
    }
}

static int check_valid(const golden_t *g, const uint8_t *wire, size_t n_wire)
{
    static uint8_t buf[MAX_BYTES], golden_body[MAX_BYTES], out[MAX_BYTES];
    size_t n_body = parse_hex(field(g, "body"), golden_body);
    ebci_frame_t frame;
    uint32_t detail = 0;
    memcpy(buf, wire, n_wire);
    ebci_status_t st = ebci_frame_decode(buf, n_wire - 1, &frame, &detail);
    if (st != EBCI_OK) {
        return report(g, "ebci_frame_decode returned %d (detail %u)", (int)st, (unsigned)detail);
    }
    if (frame.type != field_int(g, "type") || frame.flags != field_int(g, "flags") ||
        frame.seq != field_int(g, "seq")) {
        return report(g, "header type 0x%02x flags 0x%02x seq %u differs from golden", frame.type, frame.flags,
                      frame.seq);
    }
    if (same_bytes(g, "decoded body", frame.body, frame.len, golden_body, n_body)) {
        return 1;
    }
    ebci_frame_t mine = { frame.type, frame.flags, frame.seq, (uint16_t)n_body, golden_body };
    size_t n_out = 0;
    if (ebci_frame_encode(&mine, out, sizeof out, &n_out) != EBCI_OK ||
        same_bytes(g, "encoded frame", out, n_out, wire, n_wire)) {
        return 1;
    }
    if (ebci_frame_encode(&mine, out, n_wire - 1, &n_out) != EBCI_ERR_ARG) {
        return report(g, "encoding into a buffer one byte short did not fail");
    }
    return check_body(g, frame.type, golden_body, n_body) || check_damage_rejected(g, wire, n_wire - 1);
}

static int split_tokens(char *line, golden_t *g)
{
    g->n = 0;
    g->name = "?";
    for (char *tok = strtok(line, " \n"); tok != NULL && g->n < MAX_TOKENS; tok = strtok(NULL, " \n")) {
        char *eq = strchr(tok, '=');
        if (eq == NULL) {
            return -1;
        }
        *eq = '\0';
        g->key[g->n] = tok;
        g->value[g->n++] = eq + 1;
    }
    g->name = field(g, "name") != NULL ? field(g, "name") : "?";
    return 0;
}

int main(int argc, char **argv)
{
    static char line[MAX_LINE];
    static uint8_t wire[MAX_BYTES];
    int n_ok = 0, n_failed = 0;
    FILE *f = argc > 1 ? fopen(argv[1], "r") : NULL;
    if (f == NULL) {
        fprintf(stderr, "usage: %s tests/data/golden_frames.txt\n", argv[0]);
        return 2;
    }
    for (int line_no = 1; fgets(line, sizeof line, f) != NULL; line_no++) {
        golden_t g;
        if (line_no == 1 || line[0] == '#' || line[0] == '\n') {
            continue;   /* the "Generated by" line and comments */
        }
        if (split_tokens(line, &g) != 0 || field(&g, "wire") == NULL) {
            printf("FAIL line %d: not a golden frame line\n", line_no);
            n_failed++;
            continue;
        }
        size_t n_wire = parse_hex(field(&g, "wire"), wire);
        int failed = (n_wire < 2 || wire[n_wire - 1] != 0) ? report(&g, "wire must end with the 00 delimiter")
                     : field(&g, "expect") != NULL        ? check_damaged(&g, wire, n_wire)
                                                          : check_valid(&g, wire, n_wire);
        if (!failed) {
            printf("ok %s\n", g.name);
        }
        n_ok += !failed;
        n_failed += failed;
    }
    fclose(f);
    printf("summary %d %d\n", n_ok, n_failed);
    return n_failed == 0 && n_ok > 0 ? 0 : 1;
}
