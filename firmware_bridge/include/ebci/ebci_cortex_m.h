/* What every bare-metal Cortex-M port shares (src/ebci_cortex_m.c): RAM set-up before the device runs,
 * stack painting and its high-water mark, the default and hard-fault handlers.
 *
 * A port's ebci_startup.c keeps what is its own (vector table, FPU/VTOR/cache set-up) and ends its
 * Reset_Handler with:
 *     ebci_cortex_m_init_ram();
 *     ebci_cortex_m_run();
 * The linker script (ld/cortex_m.ld) provides _sidata/_sdata/_edata, _sbss/_ebss and the explicit
 * .stack section (__stack_bottom/__stack_top) of the target's stack_bytes.
 */
#ifndef EBCI_CORTEX_M_H
#define EBCI_CORTEX_M_H

#include "ebci/ebci_device.h"

/* Copy .data from flash, zero .bss, paint the stack below the caller's frame. Runs before .data exists. */
void ebci_cortex_m_init_ram(void);

/* Run the device loop (ebci_device_run); should it return, sleep forever. Inlined, so the device loop
 * starts from Reset_Handler's own frame and the stack high-water mark is what it was. */
__attribute__((noreturn, always_inline)) static inline void ebci_cortex_m_run(void)
{
    (void)ebci_device_run();
    for (;;) {
        __asm volatile("wfi");
    }
}

/* For the vector table. HardFault_Handler hands the stacked frame to ebci_hal_fault(). */
void Default_Handler(void);
void HardFault_Handler(void);

#endif /* EBCI_CORTEX_M_H */
