/* Decoding: int16 samples -> fixed-point Bessel biquads -> ebci_model_run -> scores.
 *
 * The front end runs here, sample by sample, rather than inside the generated model: it is causal
 * and streaming by nature, and keeping it out of the graph keeps the model input a plain buffer.
 * Window mode filters each window from rest (exactly the training path's zero state). Stream mode
 * filters every sample as it arrives, with its own state carried across calls, into a ring of
 * filtered samples, and keeps the raw samples of the last window too: a decision runs the model on
 * either the window filtered from rest (EBCI_STREAM_FROM_REST, what the bundled decoders were
 * trained on) or the continuously filtered ring (EBCI_STREAM_CONTINUOUS, no start-up transient,
 * for decoders trained on continuously filtered recordings). A WINDOW request in the middle of a
 * stream does not disturb it.
 */
#include <string.h>

#include "ebci_frontend.h"
#include "ebci_model.h"

#include "ebci/ebci_decoder.h"
#include "ebci/ebci_filter.h"
#include "ebci/ebci_tvm_shim.h"

#define EBCI_FILTER_WORDS (EBCI_MODEL_N_CH * EBCI_FRONTEND_N_SECTIONS * EBCI_FILTER_STATE_WORDS)

/* The model input, channel-major as ebci_model_run expects: float microvolts, or the front end's int32
 * output itself for an integer-only model (ebci_model.h says which). */
static ebci_model_input_t g_input[EBCI_MODEL_N_CH][EBCI_MODEL_N_SAMP];
static int32_t g_window_state[EBCI_FILTER_WORDS];
static ebci_filter_t g_window_filter;
static uint32_t g_error_detail;

static struct {
    ebci_filter_t filter;
    int32_t state[EBCI_FILTER_WORDS];
    int32_t ring[EBCI_MODEL_N_SAMP][EBCI_MODEL_N_CH];   /* filtered; sample i at row i % n_samp */
    int16_t raw[EBCI_MODEL_N_SAMP][EBCI_MODEL_N_CH];    /* as received; same rows */
    uint32_t n_samples;                                 /* pushed since the start */
    uint32_t hop;                                       /* 0: no stream started */
    ebci_stream_mode_t mode;
} g_stream;

/* One window of rows [n_samp][n_ch] starting at row `first` (wrapping: the stream's raw ring), filtered
 * from rest into out [n_ch][n_samp] model inputs (a float input is exact for |y| < 2^24, rounded above). */
static void filter_from_rest(const int16_t (*rows)[EBCI_MODEL_N_CH], uint32_t first, ebci_model_input_t *out)
{
    if (g_window_filter.design == NULL) {   /* the design is a constant: binding it cannot fail */
        (void)ebci_filter_init(&g_window_filter, &ebci_frontend_design, EBCI_MODEL_N_CH, g_window_state,
                               EBCI_FILTER_WORDS);
    }
    ebci_filter_reset(&g_window_filter);   /* every window starts from rest, like the training path */
    for (uint32_t t = 0; t < EBCI_MODEL_N_SAMP; t++) {
        const int16_t *row = rows[(first + t) % EBCI_MODEL_N_SAMP];
        for (int c = 0; c < EBCI_MODEL_N_CH; c++) {
            int32_t y = ebci_filter_push_one(&g_window_filter, c, row[c]);
            out[(size_t)c * EBCI_MODEL_N_SAMP + (size_t)t] = EBCI_MODEL_FROM_FILTER(y, EBCI_FRONTEND_IN_SHIFT);
        }
    }
}

void ebci_decoder_filter(const int16_t *x_interleaved, float *out)
{
    filter_from_rest((const int16_t (*)[EBCI_MODEL_N_CH])x_interleaved, 0, &g_input[0][0]);
    for (size_t i = 0; i < (size_t)EBCI_MODEL_N_CH * EBCI_MODEL_N_SAMP; i++) {
        out[i] = EBCI_MODEL_TO_UV((&g_input[0][0])[i], EBCI_FRONTEND_IN_SHIFT);
    }
}

static ebci_status_t run_model(float *scores)
{
    ebci_model_output_t logits[EBCI_MODEL_N_CLASSES];
    ebci_workspace_reset();
    int rc = ebci_model_run(&g_input[0][0], logits);
    for (int k = 0; k < EBCI_MODEL_N_CLASSES; k++) {
        scores[k] = EBCI_MODEL_SCORE(logits[k]);   /* integer logits become exact float scores here, outside the model */
    }
    ebci_status_t shim = ebci_workspace_status();
    if (shim == EBCI_ERR_WORKSPACE) {
        g_error_detail = ebci_workspace_error_detail();
        return shim;
    }
    if (rc != 0 || shim != EBCI_OK) {
        g_error_detail = (uint32_t)rc;
        return EBCI_ERR_MODEL;
    }
    g_error_detail = 0;
    return EBCI_OK;
}

ebci_status_t ebci_decoder_run(const int16_t *x_interleaved, float *scores)
{
    filter_from_rest((const int16_t (*)[EBCI_MODEL_N_CH])x_interleaved, 0, &g_input[0][0]);
    return run_model(scores);
}

ebci_status_t ebci_stream_start(uint32_t hop_samples, ebci_stream_mode_t mode)
{
    if (hop_samples == 0u || (mode != EBCI_STREAM_FROM_REST && mode != EBCI_STREAM_CONTINUOUS)) {
        return EBCI_ERR_ARG;
    }
    g_stream.mode = mode;
    (void)ebci_filter_init(&g_stream.filter, &ebci_frontend_design, EBCI_MODEL_N_CH, g_stream.state,
                           EBCI_FILTER_WORDS);
    g_stream.n_samples = 0;
    g_stream.hop = hop_samples;
    return EBCI_OK;
}

/* The ring's last n_samp samples, oldest first, as the model's channel-major input. */
static void unroll_ring(void)
{
    uint32_t first = g_stream.n_samples % EBCI_MODEL_N_SAMP;   /* oldest row once the ring is full */
    if (g_stream.mode == EBCI_STREAM_FROM_REST) {
        filter_from_rest((const int16_t (*)[EBCI_MODEL_N_CH])g_stream.raw, first, &g_input[0][0]);
        return;
    }
    for (uint32_t t = 0; t < EBCI_MODEL_N_SAMP; t++) {
        const int32_t *row = g_stream.ring[(first + t) % EBCI_MODEL_N_SAMP];
        for (int c = 0; c < EBCI_MODEL_N_CH; c++) {
            g_input[c][t] = EBCI_MODEL_FROM_FILTER(row[c], EBCI_FRONTEND_IN_SHIFT);
        }
    }
}

ebci_status_t ebci_stream_push(const int16_t *x_interleaved, uint32_t n, float *scores, int *decided,
                               uint32_t *end_sample)
{
    *decided = 0;
    *end_sample = 0;
    if (g_stream.hop == 0u) {
        return EBCI_ERR_STREAM;
    }
    if (n == 0u || n > g_stream.hop || n > (uint32_t)EBCI_MODEL_N_SAMP) {
        return EBCI_ERR_SHAPE;
    }
    ebci_status_t status = EBCI_OK;
    for (uint32_t t = 0; t < n; t++) {
        uint32_t row = g_stream.n_samples % EBCI_MODEL_N_SAMP;
        const int16_t *src = x_interleaved + (size_t)t * EBCI_MODEL_N_CH;
        for (int c = 0; c < EBCI_MODEL_N_CH; c++) {
            g_stream.raw[row][c] = src[c];
            g_stream.ring[row][c] = ebci_filter_push_one(&g_stream.filter, c, src[c]);
        }
        g_stream.n_samples++;
        uint32_t got = g_stream.n_samples;
        if (got >= (uint32_t)EBCI_MODEL_N_SAMP && (got - (uint32_t)EBCI_MODEL_N_SAMP) % g_stream.hop == 0u) {
            unroll_ring();
            status = run_model(scores);
            *decided = status == EBCI_OK;
            *end_sample = got;
        }
    }
    return status;
}

uint32_t ebci_stream_n_samples(void)
{
    return g_stream.n_samples;
}

uint32_t ebci_stream_hop(void)
{
    return g_stream.hop;
}

uint32_t ebci_stream_saturated(void)
{
    return g_stream.hop == 0u ? 0u : g_stream.filter.n_saturated;
}

const int32_t *ebci_stream_filtered(uint32_t index)
{
    if (index >= g_stream.n_samples || g_stream.n_samples - index > (uint32_t)EBCI_MODEL_N_SAMP) {
        return NULL;
    }
    return g_stream.ring[index % EBCI_MODEL_N_SAMP];
}

uint32_t ebci_decoder_error_detail(void)
{
    return g_error_detail;
}

int ebci_scores_argmax(const float *scores, int n_classes)
{
    int best = 0;
    for (int k = 1; k < n_classes; k++) {
        if (scores[k] > scores[best]) {
            best = k;
        }
    }
    return best;
}

int ebci_decoder_n_ch(void)
{
    return EBCI_MODEL_N_CH;
}

int ebci_decoder_n_samp(void)
{
    return EBCI_MODEL_N_SAMP;
}

int ebci_decoder_n_classes(void)
{
    return EBCI_MODEL_N_CLASSES;
}

int ebci_decoder_fs_hz(void)
{
    return (int)(EBCI_MODEL_FS_HZ);
}

int ebci_decoder_n_sections(void)
{
    return EBCI_FRONTEND_N_SECTIONS;
}

int ebci_decoder_in_shift(void)
{
    return EBCI_FRONTEND_IN_SHIFT;
}
