/* Host port: buffered byte I/O on file descriptors and CLOCK_MONOTONIC as the decode timer.
 *
 * Ticks are nanoseconds of a time-shared Linux process: link health and a rough host
 * latency, never cycles.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <time.h>
#include <unistd.h>

#include "ebci/ebci_hal.h"
#include "ebci/ebci_protocol.h"

#ifndef EBCI_BOARD_NAME
#define EBCI_BOARD_NAME "host"
#endif
#ifndef EBCI_CPU_NAME
#define EBCI_CPU_NAME "unknown"
#endif
#ifndef EBCI_CPU_HZ
#define EBCI_CPU_HZ 0
#endif

extern int ebci_host_fd_in;
extern int ebci_host_fd_out;

static const ebci_hal_info_t k_info = {
    EBCI_BOARD_NAME, EBCI_CPU_NAME, (uint32_t)(EBCI_CPU_HZ), 1000000000u, EBCI_TIMER_OS_NS,
};
static uint8_t g_in[4096];
static uint8_t g_out[4096];
static size_t g_in_pos, g_in_len, g_out_len;

void ebci_hal_init(void)
{
}

const ebci_hal_info_t *ebci_hal_info(void)
{
    return &k_info;
}

int ebci_serial_getc(void)
{
    if (g_in_pos == g_in_len) {
        ebci_serial_flush();
        ssize_t r;
        do {
            r = read(ebci_host_fd_in, g_in, sizeof g_in);
        } while (r < 0 && errno == EINTR);
        if (r <= 0) {
            return -1;
        }
        g_in_pos = 0;
        g_in_len = (size_t)r;
    }
    return g_in[g_in_pos++];
}

void ebci_serial_write(const uint8_t *data, size_t n)
{
    while (n--) {
        if (g_out_len == sizeof g_out) {
            ebci_serial_flush();
        }
        g_out[g_out_len++] = *data++;
    }
}

void ebci_serial_flush(void)
{
    size_t off = 0;
    while (off < g_out_len) {
        ssize_t w = write(ebci_host_fd_out, g_out + off, g_out_len - off);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            break;   /* the host hung up: the next read sees EOF and ends the process */
        }
        off += (size_t)w;
    }
    g_out_len = 0;
}

void ebci_ticks_reset(void)
{
}

uint64_t ebci_ticks_read(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
