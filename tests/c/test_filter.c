/* Golden check of firmware_bridge's fixed-point biquad cascade (ebci_filter.c), built with the host gcc
 * by tests/test_frontend_golden.py under AddressSanitizer and UBSan where available (so a signed
 * overflow in the arithmetic fails the test, not just a wrong number).
 *
 * usage: test_filter tests/data/iir_golden.txt
 * Each case is filtered three ways (one call, one sample per call, chunks of 7): every output must
 * equal the golden y written by edgebci/frontend/fixed.py, and the saturation count its count.
 * Prints "ok <name>" or "FAIL <name>: <why>" per case, then "summary <ok> <failed>"; exit 1 on failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ebci/ebci_filter.h"

#define MAX_LINE (1 << 20)
#define MAX_VALUES 8192
#define MAX_SECTIONS 16

static const char *field(char *line, const char *key, char *out, size_t cap)
{
    size_t n = strlen(key);
    for (char *p = line; (p = strstr(p, key)) != NULL; p += n) {
        if ((p == line || p[-1] == ' ') && p[n] == '=') {
            const char *v = p + n + 1;
            size_t len = strcspn(v, " \n");
            if (len >= cap) {
                len = cap - 1;
            }
            memcpy(out, v, len);
            out[len] = '\0';
            return out;
        }
    }
    return NULL;
}

static size_t parse_list(const char *s, long long *out, size_t cap)
{
    size_t n = 0;
    char *end = NULL;
    while (s != NULL && *s != '\0' && n < cap) {
        out[n++] = strtoll(s, &end, 10);
        s = (*end == ',') ? end + 1 : end;
    }
    return n;
}

static long long values[MAX_VALUES];
static char buf[MAX_LINE];

static int run_case(char *line, const char **name_out)
{
    static char name[128];
    static int16_t x[MAX_VALUES];
    static int32_t want[MAX_VALUES], got[MAX_VALUES];
    static int32_t coeffs[MAX_SECTIONS][5];
    static uint8_t post_shift[MAX_SECTIONS];
    static int32_t state[MAX_VALUES];
    *name_out = field(line, "name", name, sizeof name) ? name : "?";
    int n_sections = atoi(field(line, "n_sections", buf, sizeof buf) ? buf : "0");
    int in_shift = atoi(field(line, "in_shift", buf, sizeof buf) ? buf : "-1");
    int n_ch = atoi(field(line, "n_ch", buf, sizeof buf) ? buf : "0");
    int n_samp = atoi(field(line, "n_samp", buf, sizeof buf) ? buf : "0");
    long long saturated = atoll(field(line, "saturated", buf, sizeof buf) ? buf : "-1");
    size_t total = (size_t)n_ch * (size_t)n_samp;
    if (n_sections <= 0 || n_sections > MAX_SECTIONS || total == 0 || total > MAX_VALUES) {
        printf("FAIL %s: bad sizes (%d sections, %d x %d)\n", name, n_sections, n_ch, n_samp);
        return 1;
    }
    if (parse_list(field(line, "post_shift", buf, sizeof buf), values, MAX_VALUES) != (size_t)n_sections) {
        printf("FAIL %s: post_shift list\n", name);
        return 1;
    }
    for (int k = 0; k < n_sections; k++) {
        post_shift[k] = (uint8_t)values[k];
    }
    if (parse_list(field(line, "coeffs", buf, sizeof buf), values, MAX_VALUES) != (size_t)n_sections * 5u) {
        printf("FAIL %s: coeffs list\n", name);
        return 1;
    }
    for (int k = 0; k < n_sections; k++) {
        for (int j = 0; j < 5; j++) {
            coeffs[k][j] = (int32_t)values[5 * k + j];
        }
    }
    if (parse_list(field(line, "x", buf, sizeof buf), values, MAX_VALUES) != total) {
        printf("FAIL %s: x list\n", name);
        return 1;
    }
    for (size_t i = 0; i < total; i++) {
        x[i] = (int16_t)values[i];
    }
    if (parse_list(field(line, "y", buf, sizeof buf), values, MAX_VALUES) != total) {
        printf("FAIL %s: y list\n", name);
        return 1;
    }
    for (size_t i = 0; i < total; i++) {
        want[i] = (int32_t)values[i];
    }
    ebci_filter_design_t design = { n_sections, in_shift, (const int32_t (*)[5])coeffs, post_shift };
    ebci_filter_t filter;
    const size_t steps[] = { (size_t)n_samp, 1, 7 };   /* one call, one sample per call, chunks of 7 */
    for (size_t s = 0; s < sizeof steps / sizeof steps[0]; s++) {
        if (ebci_filter_init(&filter, &design, n_ch, state, MAX_VALUES) != EBCI_OK) {
            printf("FAIL %s: ebci_filter_init refused the golden design\n", name);
            return 1;
        }
        memset(got, 0x55, sizeof got);
        for (size_t t = 0; t < (size_t)n_samp; t += steps[s]) {
            size_t n = (size_t)n_samp - t < steps[s] ? (size_t)n_samp - t : steps[s];
            ebci_filter_push(&filter, x + t * (size_t)n_ch, n, got + t * (size_t)n_ch);
        }
        for (size_t i = 0; i < total; i++) {
            if (got[i] != want[i]) {
                printf("FAIL %s: chunks of %zu: sample %zu channel %zu is %ld, golden %ld\n", name, steps[s],
                       i / (size_t)n_ch, i % (size_t)n_ch, (long)got[i], (long)want[i]);
                return 1;
            }
        }
        if ((long long)filter.n_saturated != saturated) {
            printf("FAIL %s: %lu outputs saturated, golden %lld\n", name, (unsigned long)filter.n_saturated, saturated);
            return 1;
        }
    }
    /* the arguments are checked at the edge */
    ebci_filter_design_t bad = design;
    bad.in_shift = EBCI_FILTER_MAX_IN_SHIFT + 1;
    if (ebci_filter_init(&filter, &bad, n_ch, state, MAX_VALUES) != EBCI_ERR_ARG ||
        ebci_filter_init(&filter, &design, n_ch, state, (size_t)n_ch * (size_t)n_sections * 4u - 1u) != EBCI_ERR_ARG) {
        printf("FAIL %s: a bad in_shift or too little state was accepted\n", name);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static char line[MAX_LINE];
    int n_ok = 0, n_failed = 0;
    FILE *f = argc > 1 ? fopen(argv[1], "r") : NULL;
    if (f == NULL) {
        fprintf(stderr, "usage: %s tests/data/iir_golden.txt\n", argv[0]);
        return 2;
    }
    for (int line_no = 1; fgets(line, sizeof line, f) != NULL; line_no++) {
        if (line_no == 1 || line[0] == '#' || line[0] == '\n') {
            continue;
        }
        const char *name = "?";
        int failed = run_case(line, &name);
        if (!failed) {
            printf("ok %s\n", name);
        }
        n_ok += !failed;
        n_failed += failed;
    }
    fclose(f);
    printf("summary %d %d\n", n_ok, n_failed);
    return n_failed == 0 && n_ok > 0 ? 0 : 1;
}
