/* MPS2/MPS3 port (QEMU mps2-an386, mps2-an500, mps3-an547, and the FPGA boards), entry point:
 * vector table, reset handler, stack painting, fault entry.
 *
 * The linker script (ld/cortex_m.ld) provides _sidata/_sdata/_edata, _sbss/_ebss and an
 * explicit .stack section (__stack_bottom/__stack_top) of the target's stack_bytes, so data,
 * bss and stack that exceed the board's RAM fail the link instead of the run.
 */
#include <stdint.h>

#include "ebci/ebci_device.h"
#include "ebci/ebci_hal.h"

#define EBCI_STACK_PAINT 0xC0DEC0DEu
#define EBCI_PAINT_GUARD_BYTES 64u   /* left unpainted below the reset handler's own frame */
#ifndef EBCI_N_IRQ
#define EBCI_N_IRQ 32                /* external interrupts are never enabled; these only catch strays */
#endif

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[];
extern uint32_t __stack_bottom[], __stack_top[];

void Reset_Handler(void);
void Default_Handler(void);
void HardFault_Handler(void);
void SysTick_Handler(void);   /* ebci_hal.c */

__attribute__((section(".isr_vector"), used)) void (*const g_vectors[16 + EBCI_N_IRQ])(void) = {
    (void (*)(void))(uintptr_t)__stack_top,
    Reset_Handler,
    Default_Handler,     /* NMI */
    HardFault_Handler,
    HardFault_Handler,   /* MemManage */
    HardFault_Handler,   /* BusFault */
    HardFault_Handler,   /* UsageFault */
    HardFault_Handler,   /* SecureFault (v8-M) */
    0,
    0,
    0,
    Default_Handler,     /* SVCall */
    Default_Handler,     /* DebugMonitor */
    0,
    Default_Handler,     /* PendSV */
    SysTick_Handler,
    [16 ... 16 + EBCI_N_IRQ - 1] = Default_Handler,
};

/* No loop-to-memcpy/memset rewriting here: this runs before .data exists. */
__attribute__((noreturn, optimize("no-tree-loop-distribute-patterns"))) void Reset_Handler(void)
{
    /* CPACR: full access to CP10/CP11 (the FPU, and MVE on M55) before any FP instruction */
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
    __asm volatile("dsb\n isb" ::: "memory");
    *(volatile uint32_t *)0xE000ED08u = (uint32_t)(uintptr_t)g_vectors;   /* VTOR */

    volatile uint32_t *src = _sidata, *dst = _sdata;
    while (dst < _edata) {
        *dst++ = *src++;
    }
    for (dst = _sbss; dst < _ebss;) {
        *dst++ = 0;
    }

    uint32_t sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    for (volatile uint32_t *p = __stack_bottom; (uintptr_t)p < sp - EBCI_PAINT_GUARD_BYTES;) {
        *p++ = EBCI_STACK_PAINT;
    }

    (void)ebci_device_run();
    for (;;) {
        __asm volatile("wfi");
    }
}

uint32_t ebci_stack_size(void)
{
    return (uint32_t)((uintptr_t)__stack_top - (uintptr_t)__stack_bottom);
}

uint32_t ebci_stack_used(void)
{
    const volatile uint32_t *p = __stack_bottom;
    while (p < __stack_top && *p == EBCI_STACK_PAINT) {
        p++;
    }
    return (uint32_t)((uintptr_t)__stack_top - (uintptr_t)p);
}

void Default_Handler(void)
{
    for (;;) {
    }
}

/* Hand the stacked exception frame (MSP or PSP, by EXC_RETURN bit 2) to ebci_hal_fault(). */
__attribute__((naked)) void HardFault_Handler(void)
{
    __asm volatile(
        "tst lr, #4\n"
        "ite eq\n"
        "mrseq r0, msp\n"
        "mrsne r0, psp\n"
        "b ebci_hal_fault\n");
}
