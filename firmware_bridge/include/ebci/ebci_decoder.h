/* One decode: int16 window -> Bessel biquad front end -> generated model -> scores.
 *
 * The same C runs on the device (behind the WINDOW message) and on the host as the shared
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

/* The front end alone: out gets float [n_ch][n_samp] (channel-major), the model's input. */
void ebci_decoder_filter(const int16_t *x_interleaved, float *out);

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

#endif /* EBCI_DECODER_H */
