/* Decoding: int16 samples -> fixed-point Bessel biquads (ebci_filter) -> generated model -> scores.
 *
 * Two ways in, the same filter and model:
 *   window mode  ebci_decoder_run: one window, the filter starting from rest (as in training)
 *   stream mode  ebci_stream_*:    samples as they arrive, the filter state carried across calls,
 *                                  a ring of the last n_samp samples (raw and filtered), a decision
 *                                  every hop on the window filtered from rest or continuously
 * The same C runs on the device (behind WINDOW and STREAM messages) and on the host as the shared
 * library from edgebci.firmware.build.build_host_library, which is the host reference.
 * The model sizes come from the generated ebci_model.h / ebci_frontend.h; this header does not
 * include them, so callers (and ctypes) read them through the sizing functions below.
 */
#ifndef EBCI_DECODER_H
#define EBCI_DECODER_H

#include <stdint.h>

#include "ebci/ebci_status.h"

/* Decode one window.
 *   x_interleaved : int16 [n_samp][n_ch], sample-major as an amplifier delivers it, microvolts
 *   scores        : float [n_classes], the model's logits
 * The filter state starts from zero for every window. Returns EBCI_OK, EBCI_ERR_MODEL or
 * EBCI_ERR_WORKSPACE (then ebci_decoder_error_detail() and ebci_tvm_error_message() say more). */
ebci_status_t ebci_decoder_run(const int16_t *x_interleaved, float *scores);

/* The front end alone, from rest: out gets float [n_ch][n_samp] (channel-major) microvolts, the
 * model's input: the fixed-point output times 2^-in_shift. */
void ebci_decoder_filter(const int16_t *x_interleaved, float *out);

/* What a stream decision feeds the model. */
typedef enum {
    EBCI_STREAM_FROM_REST = 0,    /* the window's raw samples filtered from rest: the training path */
    EBCI_STREAM_CONTINUOUS = 1,   /* the continuously filtered samples: no start-up transient */
} ebci_stream_mode_t;

/* Start (or restart) a stream: filter at rest, ring empty, a decision every hop_samples samples
 * once n_samp have arrived. EBCI_ERR_ARG if hop_samples is 0 or mode unknown. Either way every
 * sample goes through the continuous filter (ebci_stream_filtered). */
ebci_status_t ebci_stream_start(uint32_t hop_samples, ebci_stream_mode_t mode);

/* Push n samples (int16 [n][n_ch], sample-major, 1 <= n <= min(hop, n_samp)): each is filtered
 * and written to the ring; when the ring closes a window on the hop grid the model runs (at most
 * once per call, since n <= hop). *decided gets 1 and *end_sample the window's end (the window is
 * samples [end_sample - n_samp, end_sample) of the stream), scores the logits; else *decided = 0.
 * Errors: EBCI_ERR_STREAM (no stream started), EBCI_ERR_SHAPE (n out of range; nothing consumed),
 * EBCI_ERR_MODEL / EBCI_ERR_WORKSPACE (the samples were consumed, the decision is lost). */
ebci_status_t ebci_stream_push(const int16_t *x_interleaved, uint32_t n, float *scores, int *decided,
                               uint32_t *end_sample);

/* Samples pushed since ebci_stream_start, the hop, and the section outputs clipped so far. */
uint32_t ebci_stream_n_samples(void);
uint32_t ebci_stream_hop(void);
uint32_t ebci_stream_saturated(void);

/* The filtered int32 samples [n_ch] (microvolts * 2^in_shift) of stream sample `index`, or NULL
 * when it is not in the ring (not yet pushed, or older than n_samp samples). */
const int32_t *ebci_stream_filtered(uint32_t index);

/* Model return code (MODEL) or requested workspace bytes (WORKSPACE) of the last failure. */
uint32_t ebci_decoder_error_detail(void);

/* Index of the largest score (the first one on ties). */
int ebci_scores_argmax(const float *scores, int n_classes);

/* Sizing companions, from the generated headers. */
int ebci_decoder_n_ch(void);
int ebci_decoder_n_samp(void);
int ebci_decoder_n_classes(void);
int ebci_decoder_fs_hz(void);
int ebci_decoder_n_sections(void);
int ebci_decoder_in_shift(void);

#endif /* EBCI_DECODER_H */
