/* Fixed-point biquad cascade: the device's front end, per channel, state kept across calls.
 *
 * Arithmetic (edgebci/frontend/fixed.py is its bit-exact reference; tests hold them equal):
 *   data      int32, x_q = x_uV * 2^in_shift
 *   section   direct form I, coefficients int32 (b0, b1, b2, a1, a2) scaled by 2^(31 - post_shift)
 *             acc = b0*x[n] + b1*x[n-1] + b2*x[n-2] - a1*y[n-1] - a2*y[n-2]           (int64)
 *             y[n] = saturate_int32((acc + 2^(30 - post_shift)) >> (31 - post_shift))
 * The post-shift is chosen by the quantiser so that the int64 accumulator cannot overflow for any
 * state; only the output can leave int32, and it then clips (counted in n_saturated), never wraps.
 * No malloc: the caller owns the state array, sized with EBCI_FILTER_STATE_WORDS.
 */
#ifndef EBCI_FILTER_H
#define EBCI_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "ebci/ebci_status.h"

/* int32 words of state per channel and section: x[n-1], x[n-2], y[n-1], y[n-2]. */
#define EBCI_FILTER_STATE_WORDS 4
#define EBCI_FILTER_MAX_IN_SHIFT 16

typedef struct {
    int n_sections;
    int in_shift;                  /* fractional bits of the data, 0..16 */
    const int32_t (*coeffs)[5];    /* [n_sections]: b0 b1 b2 a1 a2 */
    const uint8_t *post_shift;     /* [n_sections], 0..30 */
} ebci_filter_design_t;

typedef struct {
    const ebci_filter_design_t *design;
    int n_ch;
    int32_t *state;                /* [n_ch][n_sections][EBCI_FILTER_STATE_WORDS], caller storage */
    uint32_t n_saturated;          /* section outputs clipped to int32 since the last reset */
} ebci_filter_t;

/* Bind a design and caller-owned state (n_state_words >= n_ch * n_sections * 4) and reset it.
 * EBCI_ERR_ARG on a NULL pointer, a bad shift or too little state. */
ebci_status_t ebci_filter_init(ebci_filter_t *filter, const ebci_filter_design_t *design, int n_ch, int32_t *state,
                               size_t n_state_words);

/* Zero the state (the filter at rest) and the saturation count. */
void ebci_filter_reset(ebci_filter_t *filter);

/* Filter n_samp samples of every channel, continuing from the state of the previous call.
 *   x   : int16 [n_samp][n_ch], sample-major microvolts, as an amplifier delivers them
 *   out : int32 [n_samp][n_ch], microvolts * 2^in_shift (may not alias x) */
void ebci_filter_push(ebci_filter_t *filter, const int16_t *x, size_t n_samp, int32_t *out);

/* One sample of one channel through the cascade (the building block of ebci_filter_push). */
int32_t ebci_filter_push_one(ebci_filter_t *filter, int ch, int16_t x);

#endif /* EBCI_FILTER_H */
