/* The board port: what ebci_device.c needs from a board, and nothing else.
 *
 * Each folder hal/<name>/ implements this header in the same two files (the TFLite Micro
 * pattern: a port replaces files, it does not add #ifdefs):
 *   ebci_startup.c  entry point, stack reservation and painting (ebci_stack_*)
 *   ebci_hal.c      serial byte I/O, the decode timer, board facts, fault reporting
 * Board numbers (UART base, clocks) arrive as -D from the target TOML through
 * edgebci.firmware.build: EBCI_BOARD_NAME, EBCI_CPU_NAME, EBCI_CPU_HZ, EBCI_STACK_BYTES and one
 * EBCI_<KEY> per [hal_config] key (EBCI_UART_BASE, EBCI_UART_CLK_HZ on mps2).
 */
#ifndef EBCI_HAL_H
#define EBCI_HAL_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *board;     /* "mps2-an386" */
    const char *cpu;       /* "cortex-m4" */
    uint32_t cpu_hz;       /* nominal core clock, 0 if unknown (a Linux host) */
    uint32_t timer_hz;     /* rate of ebci_ticks_read() */
    uint8_t timer_src;     /* EBCI_TIMER_* from ebci/ebci_protocol.h */
} ebci_hal_info_t;

/* Bring up the serial port and the timer; called once by ebci_device_run(). */
void ebci_hal_init(void);
const ebci_hal_info_t *ebci_hal_info(void);

/* Blocking read of one byte; < 0 when the link is closed (a Linux process at EOF). */
int ebci_serial_getc(void);
void ebci_serial_write(const uint8_t *data, size_t n);
/* Push buffered bytes out; the device calls it once per reply. */
void ebci_serial_flush(void);

/* Re-phase the timer before a measurement (identical counts from run to run under QEMU
 * -icount), then read a monotonic 64-bit count of timer_hz ticks. */
void ebci_ticks_reset(void);
uint64_t ebci_ticks_read(void);

/* Bytes reserved for the stack, and the most ever used (painted high-water mark). */
uint32_t ebci_stack_size(void);
uint32_t ebci_stack_used(void);

#endif /* EBCI_HAL_H */
