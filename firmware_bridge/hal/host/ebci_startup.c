/* Host port, entry point: the firmware as a Linux process.
 *
 *   ebci_device              speak the protocol on stdin/stdout
 *   ebci_device --pty        make a pty and print "char device redirected to /dev/pts/N" on
 *                            stderr, the line QEMU prints for -serial pty
 *   ebci_device /dev/ttyX    open a serial port or pty in raw mode
 *
 * The stack is measured like on a board: main paints EBCI_STACK_BYTES below its frame before
 * serving, and ebci_stack_used() finds the deepest overwritten word.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "ebci/ebci_device.h"
#include "ebci/ebci_hal.h"

#ifndef EBCI_STACK_BYTES
#define EBCI_STACK_BYTES 65536
#endif
#define EBCI_STACK_PAINT 0xC0DEC0DEu
#define EBCI_PAINT_WORDS ((EBCI_STACK_BYTES) / 4)

/* Set by main for ebci_hal.c. */
int ebci_host_fd_in = 0;
int ebci_host_fd_out = 1;

static uintptr_t g_stack_top;   /* main's frame */
static uintptr_t g_stack_low;   /* lowest painted word */

__attribute__((noinline)) static void paint_stack(void)
{
    volatile uint32_t words[EBCI_PAINT_WORDS];
    for (size_t i = 0; i < EBCI_PAINT_WORDS; i++) {
        words[i] = EBCI_STACK_PAINT;
    }
    g_stack_low = (uintptr_t)words;
}

uint32_t ebci_stack_size(void)
{
    return (uint32_t)(EBCI_PAINT_WORDS * 4u);
}

uint32_t ebci_stack_used(void)
{
    const volatile uint32_t *p = (const volatile uint32_t *)g_stack_low;
    while ((uintptr_t)p < g_stack_top && *p == EBCI_STACK_PAINT) {
        p++;
    }
    return (uint32_t)(g_stack_top - (uintptr_t)p);
}

static void make_raw(int fd)
{
    struct termios t;
    if (tcgetattr(fd, &t) == 0) {
        cfmakeraw(&t);
        tcsetattr(fd, TCSANOW, &t);
    }
}

static int open_pty(void)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) {
        perror("ebci_device: pty");
        return -1;
    }
    make_raw(master);
    /* hold the slave open and raw so the host's open finds it configured and no EOF on close */
    int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    if (slave >= 0) {
        make_raw(slave);
    }
    fprintf(stderr, "char device redirected to %s\n", ptsname(master));
    return master;
}

int main(int argc, char **argv)
{
    volatile int top = 0;
    g_stack_top = (uintptr_t)&top;
    setvbuf(stderr, NULL, _IONBF, 0);
    signal(SIGPIPE, SIG_IGN);   /* a host that hung up ends the process through EOF, not a signal */
    if (argc > 1 && strcmp(argv[1], "--pty") == 0) {
        ebci_host_fd_in = ebci_host_fd_out = open_pty();
    } else if (argc > 1) {
        ebci_host_fd_in = ebci_host_fd_out = open(argv[1], O_RDWR | O_NOCTTY);
        if (ebci_host_fd_in < 0) {
            perror(argv[1]);
        } else {
            make_raw(ebci_host_fd_in);
        }
    }
    if (ebci_host_fd_in < 0) {
        return 2;
    }
    paint_stack();
    return ebci_device_run();
}
