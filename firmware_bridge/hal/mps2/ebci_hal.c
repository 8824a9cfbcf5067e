/* MPS2/MPS3 port: CMSDK APB UART (polled), the decode timer (DWT, or SysTick under QEMU) and
 * fault reporting. Board numbers arrive as -D from the target TOML: EBCI_UART_BASE,
 * EBCI_UART_CLK_HZ ([hal_config]), EBCI_CPU_HZ (clock_hz), EBCI_BOARD_NAME, EBCI_CPU_NAME.
 */
#include <stdint.h>

#include "ebci/ebci_device.h"
#include "ebci/ebci_hal.h"
#include "ebci/ebci_protocol.h"

#if !defined(EBCI_UART_BASE) || !defined(EBCI_UART_CLK_HZ) || !defined(EBCI_CPU_HZ)
#error "the mps2 port needs EBCI_UART_BASE, EBCI_UART_CLK_HZ ([hal_config]) and EBCI_CPU_HZ (clock_hz)"
#endif
#ifndef EBCI_BOARD_NAME
#define EBCI_BOARD_NAME "mps2"
#endif
#ifndef EBCI_CPU_NAME
#define EBCI_CPU_NAME "cortex-m"
#endif
#define EBCI_BAUD 115200u

#define REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

/* CMSDK APB UART (Arm DDI 0479) */
#define UART_DATA REG((EBCI_UART_BASE) + 0x00u)
#define UART_STATE REG((EBCI_UART_BASE) + 0x04u)   /* bit0 TX full, bit1 RX full */
#define UART_CTRL REG((EBCI_UART_BASE) + 0x08u)    /* bit0 TX enable, bit1 RX enable */
#define UART_BAUDDIV REG((EBCI_UART_BASE) + 0x10u)

#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
#define SCB_ICSR REG(0xE000ED04u)
#define SCB_ICSR_PENDSTSET (1u << 26)
#define SCB_ICSR_PENDSTCLR (1u << 25)
#define SYST_RELOAD 0x00FFFFFFu
#define SYST_ENABLE_CORE_TICKINT 0x7u   /* CLKSOURCE = core, TICKINT, ENABLE */
#define DEMCR REG(0xE000EDFCu)
#define DWT_CTRL REG(0xE0001000u)
#define DWT_CYCCNT REG(0xE0001004u)
#define DWT_LAR REG(0xE0001FB0u)

void ebci_hal_fault(const uint32_t *exception_frame);

static ebci_hal_info_t g_info = {
    EBCI_BOARD_NAME, EBCI_CPU_NAME, (uint32_t)(EBCI_CPU_HZ), (uint32_t)(EBCI_CPU_HZ), EBCI_TIMER_SYSTICK,
};
static volatile uint32_t g_systick_wraps;

void SysTick_Handler(void)
{
    g_systick_wraps++;
}

/* QEMU models DWT but CYCCNT stays 0 (and logs "NVIC: Bad read offset 0xdfc" for DEMCR under
 * -d guest_errors: expected); on silicon it counts real cycles. */
static int dwt_start(void)
{
    DEMCR |= (1u << 24);       /* TRCENA */
    DWT_LAR = 0xC5ACCE55u;     /* unlock, needed on some Cortex-M7 parts */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;            /* CYCCNTENA */
    uint32_t before = DWT_CYCCNT;
    for (volatile int i = 0; i < 100; i++) {
    }
    return DWT_CYCCNT != before;
}

static void systick_start(void)
{
    SYST_CSR = 0;
    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0;
    g_systick_wraps = 0;
    SCB_ICSR = SCB_ICSR_PENDSTCLR;
    SYST_CSR = SYST_ENABLE_CORE_TICKINT;
}

void ebci_hal_init(void)
{
    /* QEMU ignores the baud rate but refuses to transmit with BAUDDIV < 16 */
    UART_BAUDDIV = (EBCI_UART_CLK_HZ) / EBCI_BAUD;
    UART_CTRL = 0x3u;
    if (dwt_start()) {
        g_info.timer_src = EBCI_TIMER_DWT;
    } else {
        g_info.timer_src = EBCI_TIMER_SYSTICK;
        systick_start();
    }
}

const ebci_hal_info_t *ebci_hal_info(void)
{
    return &g_info;
}

int ebci_serial_getc(void)
{
    while ((UART_STATE & 0x2u) == 0) {
    }
    return (int)(UART_DATA & 0xFFu);
}

void ebci_serial_write(const uint8_t *data, size_t n)
{
    while (n--) {
        while (UART_STATE & 0x1u) {
        }
        UART_DATA = *data++;
    }
}

void ebci_serial_flush(void)
{
}

void ebci_ticks_reset(void)
{
    if (g_info.timer_src == EBCI_TIMER_DWT) {
        DWT_CYCCNT = 0;
    } else {
        systick_start();   /* re-phase: the count then depends on the work only */
    }
}

/* 64-bit SysTick count: wraps counted by the ISR plus the down-counter. A wrap that happened
 * but whose ISR has not run yet shows as PENDSTSET with the counter at 0 or just reloaded. */
static uint64_t systick_read(void)
{
    uint32_t wraps, value, pending;
    do {
        wraps = g_systick_wraps;
        value = SYST_CVR;
        pending = SCB_ICSR & SCB_ICSR_PENDSTSET;
    } while (wraps != g_systick_wraps);   /* the ISR ran in between: sample again */
    if (pending && (value == 0 || value > SYST_RELOAD / 2u)) {
        wraps++;
    }
    return ((uint64_t)wraps << 24) + ((SYST_RELOAD + 1u - value) & SYST_RELOAD);
}

uint64_t ebci_ticks_read(void)
{
    /* CYCCNT is 32 bits: a decode of 2^32 cycles (25 s at 168 MHz) would wrap */
    return g_info.timer_src == EBCI_TIMER_DWT ? (uint64_t)DWT_CYCCNT : systick_read();
}

/* Called by HardFault_Handler with the stacked r0-r3, r12, lr, pc, xpsr. */
__attribute__((noreturn)) void ebci_hal_fault(const uint32_t *exception_frame)
{
    ebci_device_report_fault(exception_frame[6]);
    for (;;) {
    }
}
