/* The Cortex-M runtime every bare-metal port shares: see ebci/ebci_cortex_m.h. Built for cortex-m targets only. */
#include <stdint.h>

#include "ebci/ebci_cortex_m.h"
#include "ebci/ebci_hal.h"

#define EBCI_STACK_PAINT 0xC0DEC0DEu
#define EBCI_PAINT_GUARD_BYTES 64u   /* left unpainted below this function's own frame */

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[];
extern uint32_t __stack_bottom[], __stack_top[];

/* No loop-to-memcpy/memset rewriting here: this runs before .data exists. */
__attribute__((optimize("no-tree-loop-distribute-patterns"))) void ebci_cortex_m_init_ram(void)
{
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
