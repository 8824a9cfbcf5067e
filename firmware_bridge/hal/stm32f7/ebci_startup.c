/* STM32F7 port, entry point: vector table (at the start of flash, 0x08000000), reset handler
 * (FPU on, caches on). RAM set-up, stack painting and fault entry are the shared Cortex-M runtime
 * (src/ebci_cortex_m.c).
 */
#include <stdint.h>

#include "ebci/ebci_cortex_m.h"
#include "ebci/ebci_hal.h"

#define EBCI_N_IRQ 98                /* STM32F74x/F75x: never enabled, these only catch strays */

#define REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))
#define SCB_CPACR REG(0xE000ED88u)
#define SCB_VTOR REG(0xE000ED08u)
#define SCB_CCR REG(0xE000ED14u)
#define SCB_CCSIDR REG(0xE000ED80u)
#define SCB_CSSELR REG(0xE000ED84u)
#define SCB_ICIALLU REG(0xE000EF50u)
#define SCB_DCISW REG(0xE000EF60u)
#define SCB_CCR_DC (1u << 16)
#define SCB_CCR_IC (1u << 17)

extern uint32_t __stack_top[];

void Reset_Handler(void);

__attribute__((section(".isr_vector"), used)) void (*const g_vectors[16 + EBCI_N_IRQ])(void) = {
    (void (*)(void))(uintptr_t)__stack_top,
    Reset_Handler,
    Default_Handler,     /* NMI */
    HardFault_Handler,
    HardFault_Handler,   /* MemManage */
    HardFault_Handler,   /* BusFault */
    HardFault_Handler,   /* UsageFault */
    0,
    0,
    0,
    0,
    Default_Handler,     /* SVCall */
    Default_Handler,     /* DebugMonitor */
    0,
    Default_Handler,     /* PendSV */
    Default_Handler,     /* SysTick: the decode timer is DWT, SysTick stays off */
    [16 ... 16 + EBCI_N_IRQ - 1] = Default_Handler,
};

static inline void barrier(void)
{
    __asm volatile("dsb\n isb" ::: "memory");
}

/* Cortex-M7 L1 caches, the sequence of CMSIS SCB_EnableICache/SCB_EnableDCache: invalidate,
 * then enable. Nothing does DMA, so the data cache needs no maintenance afterwards. */
__attribute__((optimize("no-tree-loop-distribute-patterns"))) static void caches_enable(void)
{
    barrier();
    SCB_ICIALLU = 0;
    barrier();
    SCB_CCR |= SCB_CCR_IC;
    barrier();

    SCB_CSSELR = 0;   /* level 1 data cache */
    barrier();
    uint32_t ccsidr = SCB_CCSIDR;
    uint32_t sets = (ccsidr >> 13) & 0x7FFFu;
    do {
        uint32_t ways = (ccsidr >> 3) & 0x3FFu;
        do {
            SCB_DCISW = ((sets & 0x1FFu) << 5) | ((ways & 0x3u) << 30);
        } while (ways-- != 0u);
    } while (sets-- != 0u);
    barrier();
    SCB_CCR |= SCB_CCR_DC;
    barrier();
}

__attribute__((noreturn)) void Reset_Handler(void)
{
    SCB_CPACR |= 0xFu << 20;   /* CP10/CP11: the FPU, before any FP instruction */
    barrier();
    SCB_VTOR = (uint32_t)(uintptr_t)g_vectors;
    caches_enable();

    ebci_cortex_m_init_ram();
    ebci_cortex_m_run();
}
