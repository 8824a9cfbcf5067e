/* The device side of the HIL link: bytes in, one reply frame out per request.
 *
 * PROTOCOL FILE: the wire protocol has two owners, firmware_bridge/ (this C) and
 * edgebci/hil/frames.py (Python). Change both, then regenerate tests/data/golden_frames.txt
 * with tests/data/make_golden_frames.py: the golden frames are decoded by both test suites.
 */
#ifndef EBCI_DEVICE_H
#define EBCI_DEVICE_H

#include <stdint.h>

/* Initialise the board (ebci_hal_init) and serve requests until the link closes (never on a
 * microcontroller). Returns 0 at end of input. */
int ebci_device_run(void);

/* Feed one received byte; a 0x00 delimiter completes a frame and sends its reply. */
void ebci_device_feed(uint8_t byte);

/* Send ERROR FAULT (flags FATAL, detail = pc) from a fault handler; the caller halts after. */
void ebci_device_report_fault(uint32_t pc);

/* Sizing companion: the receive buffer in COBS bytes (one WINDOW frame, or one STREAM chunk of a
 * whole window, whichever is larger), as reported in INFO. */
uint32_t ebci_device_rx_max(void);

#endif /* EBCI_DEVICE_H */
