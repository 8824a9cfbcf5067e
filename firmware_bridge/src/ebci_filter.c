/* Fixed-point biquad cascade (layout and arithmetic in ebci/ebci_filter.h).
 *
 * Portable C99 with no model or board dependency: tests/test_frontend_fixed.py builds it alone
 * for the host and checks it bit for bit against edgebci.frontend.fixed.filter_fixed, and the
 * emulated board runs the same file inside the firmware.
 */
#include <string.h>

#include "ebci/ebci_filter.h"

ebci_status_t ebci_filter_init(ebci_filter_t *filter, const ebci_filter_design_t *design, int n_ch, int32_t *state,
                               size_t n_state_words)
{
    if (filter == NULL || design == NULL || state == NULL || design->coeffs == NULL || design->post_shift == NULL ||
        n_ch <= 0 || design->n_sections <= 0 || design->in_shift < 0 || design->in_shift > EBCI_FILTER_MAX_IN_SHIFT) {
        return EBCI_ERR_ARG;
    }
    for (int k = 0; k < design->n_sections; k++) {
        if (design->post_shift[k] > 30u) {
            return EBCI_ERR_ARG;
        }
    }
    if (n_state_words < (size_t)n_ch * (size_t)design->n_sections * EBCI_FILTER_STATE_WORDS) {
        return EBCI_ERR_ARG;
    }
    filter->design = design;
    filter->n_ch = n_ch;
    filter->state = state;
    ebci_filter_reset(filter);
    return EBCI_OK;
}

void ebci_filter_reset(ebci_filter_t *filter)
{
    memset(filter->state, 0,
           (size_t)filter->n_ch * (size_t)filter->design->n_sections * EBCI_FILTER_STATE_WORDS * sizeof(int32_t));
    filter->n_saturated = 0;
}

/* The section output needs >> of negative values to sign-extend: gcc and clang define it so (C
 * leaves it to the implementation); refuse to build anywhere it does not hold. */
_Static_assert((-8 >> 1) == -4, "ebci_filter needs arithmetic right shifts of negative integers");

int32_t ebci_filter_push_one(ebci_filter_t *filter, int ch, int16_t x)
{
    const ebci_filter_design_t *d = filter->design;
    int32_t *z = filter->state + (size_t)ch * (size_t)d->n_sections * EBCI_FILTER_STATE_WORDS;
    int32_t v = (int32_t)x * ((int32_t)1 << d->in_shift);   /* in_shift <= 16: -2^15 * 2^16 still fits */
    for (int k = 0; k < d->n_sections; k++, z += EBCI_FILTER_STATE_WORDS) {
        const int32_t *c = d->coeffs[k];
        unsigned shift = 31u - d->post_shift[k];   /* 1..31 */
        /* 32x32 -> 64 products (SMULL/SMLAL on a Cortex-M4); the quantiser bounds their sum below 2^63.
         * The rounding constant 2^(shift-1) < 2^31 starts the sum. */
        int64_t acc = (int64_t)(uint32_t)(1u << (shift - 1u)) + (int64_t)c[0] * v + (int64_t)c[1] * z[0]
                      + (int64_t)c[2] * z[1] - (int64_t)c[3] * z[2] - (int64_t)c[4] * z[3];
        /* acc >> shift from the two 32-bit halves (no 64-bit variable shift): the low word is the
         * result, and it fits int32 exactly when the bits above it are its sign extension. */
        uint32_t lo = (uint32_t)acc;
        int32_t hi = (int32_t)(acc >> 32);
        int32_t y = (int32_t)((lo >> shift) | ((uint32_t)hi << (32u - shift)));
        if ((hi >> shift) != (y >> 31)) {
            y = hi < 0 ? INT32_MIN : INT32_MAX;   /* saturate: clip, never wrap */
            filter->n_saturated++;
        }
        z[1] = z[0];
        z[0] = v;
        z[3] = z[2];
        z[2] = y;
        v = y;
    }
    return v;
}

void ebci_filter_push(ebci_filter_t *filter, const int16_t *x, size_t n_samp, int32_t *out)
{
    const int n_ch = filter->n_ch;
    for (size_t t = 0; t < n_samp; t++) {
        for (int c = 0; c < n_ch; c++) {
            out[t * (size_t)n_ch + (size_t)c] = ebci_filter_push_one(filter, c, x[t * (size_t)n_ch + (size_t)c]);
        }
    }
}
