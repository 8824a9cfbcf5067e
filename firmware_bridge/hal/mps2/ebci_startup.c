/* MPS2/MPS3 port (QEMU mps2-an385, mps2-an386, mps2-an500, mps3-an547, and the FPGA boards), entry point:
 * vector table and reset handler (FPU/MVE access, VTOR). RAM set-up, stack painting and fault entry are
 * the shared Cortex-M runtime (src/ebci_cortex_m.c).
 *
 * The linker script (ld/cortex_m.ld) provides an explicit .stack section of the target's stack_bytes,
 * so data, bss and stack that exceed the board's RAM fail the link instead of the run.
 */
#include <stdint.h>

#include "ebci/ebci_cortex_m.h"
#include "ebci/ebci_hal.h"

#ifndef EBCI_N_IRQ
#define EBCI_N_IRQ 32                /* external interrupts are never enabled; these only catch strays */
#endif

extern uint32_t __stack_top[];

void Reset_Handler(void);
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

__attribute__((noreturn)) void Reset_Handler(void)
{
    /* CPACR: full access to CP10/CP11 (the FPU, and MVE on M55) before any FP instruction. On a core
     * without an FPU (the AN385's Cortex-M3) these bits are RAZ/WI, so the same write does nothing. */
    *(volatile uint32_t *)0xE000ED88u |= (0xFu << 20);
    __asm volatile("dsb\n isb" ::: "memory");
    *(volatile uint32_t *)0xE000ED08u = (uint32_t)(uintptr_t)g_vectors;   /* VTOR */

    ebci_cortex_m_init_ram();
    ebci_cortex_m_run();
}
