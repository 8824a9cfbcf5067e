/* One decode: int16 window -> float32 Bessel biquads -> ebci_model_run -> scores.
 *
 * The front end runs here, in float32 direct form II transposed, sample by sample, rather than
 * inside the generated model: it is causal and streaming by nature (one multiply-add chain per
 * sample and channel), and keeping it out of the graph keeps the model input a plain buffer.
 */
#include <string.h>

#include "ebci_frontend.h"
#include "ebci_model.h"

#include "ebci/ebci_decoder.h"
#include "ebci/ebci_tvm_shim.h"

/* The model input, channel-major as ebci_model_run expects. */
static float g_input[EBCI_MODEL_N_CH][EBCI_MODEL_N_SAMP];
/* Two DF2T delay elements per section and channel. */
static float g_state[EBCI_MODEL_N_CH][EBCI_FRONTEND_N_SECTIONS][2];
static uint32_t g_error_detail;

/* Push one sample through one channel's cascade. Rows are scipy sos rows b0 b1 b2 a0 a1 a2
 * with a0 == 1 (the compiler normalises them). */
static inline float filter_push(float (*z)[2], float x)
{
    for (int k = 0; k < EBCI_FRONTEND_N_SECTIONS; k++) {
        const float *s = ebci_frontend_sos[k];
        float y = s[0] * x + z[k][0];
        z[k][0] = s[1] * x - s[4] * y + z[k][1];
        z[k][1] = s[2] * x - s[5] * y;
        x = y;
    }
    return x;
}

void ebci_decoder_filter(const int16_t *x_interleaved, float *out)
{
    memset(g_state, 0, sizeof g_state);   /* every window starts from rest, like the reference */
    for (int t = 0; t < EBCI_MODEL_N_SAMP; t++) {
        const int16_t *row = x_interleaved + (size_t)t * EBCI_MODEL_N_CH;
        for (int c = 0; c < EBCI_MODEL_N_CH; c++) {
            out[(size_t)c * EBCI_MODEL_N_SAMP + (size_t)t] = filter_push(g_state[c], (float)row[c]);
        }
    }
}

ebci_status_t ebci_decoder_run(const int16_t *x_interleaved, float *scores)
{
    ebci_decoder_filter(x_interleaved, &g_input[0][0]);
    ebci_workspace_reset();
    int rc = ebci_model_run(&g_input[0][0], scores);
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
