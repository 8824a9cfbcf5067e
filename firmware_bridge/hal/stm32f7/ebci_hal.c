/* STM32F7 port (Nucleo-F746ZG and other STM32F74x/F76x boards): USART (polled) on the pins of
 * the ST-LINK virtual COM port, DWT cycle counter as the decode timer, fault reporting.
 *
 * The core runs from the 16 MHz HSI oscillator, the reset default: no PLL, zero flash wait
 * states, APB1 = 16 MHz. EBCI_CPU_HZ (clock_hz) must say so; a board that sets up the PLL is a
 * new port. Board numbers arrive as -D from the target TOML ([hal_config]):
 *   EBCI_UART_BASE      USART block (USART3 0x40004800 on Nucleo-144)
 *   EBCI_UART_CLK_HZ    its kernel clock (APB1)
 *   EBCI_UART_GPIO_BASE GPIO port of the TX/RX pins (GPIOD 0x40020C00)
 *   EBCI_UART_TX_PIN, EBCI_UART_RX_PIN, EBCI_UART_AF   pin numbers and alternate function (8, 9, 7)
 *   EBCI_RCC_GPIO_EN_BIT  RCC_AHB1ENR bit of that GPIO port (3 = GPIOD)
 *   EBCI_RCC_UART_EN_BIT  RCC_APB1ENR bit of the USART (18 = USART3)
 * Register offsets: RM0385 (STM32F75xxx/74xxx reference manual), sections 5.3, 6.4 and 31.8.
 */
#include <stdint.h>

#include "ebci/ebci_device.h"
#include "ebci/ebci_hal.h"
#include "ebci/ebci_protocol.h"

#if !defined(EBCI_UART_BASE) || !defined(EBCI_UART_CLK_HZ) || !defined(EBCI_CPU_HZ) || \
    !defined(EBCI_UART_GPIO_BASE) || !defined(EBCI_UART_TX_PIN) || !defined(EBCI_UART_RX_PIN) || \
    !defined(EBCI_UART_AF) || !defined(EBCI_RCC_GPIO_EN_BIT) || !defined(EBCI_RCC_UART_EN_BIT)
#error "the stm32f7 port needs the [hal_config] keys listed at the top of hal/stm32f7/ebci_hal.c"
#endif
#ifndef EBCI_BOARD_NAME
#define EBCI_BOARD_NAME "stm32f7"
#endif
#ifndef EBCI_CPU_NAME
#define EBCI_CPU_NAME "cortex-m7"
#endif
#define EBCI_BAUD 115200u

#define REG(addr) (*(volatile uint32_t *)(uintptr_t)(addr))

#define RCC_AHB1ENR REG(0x40023830u)
#define RCC_APB1ENR REG(0x40023840u)

#define GPIO_MODER REG((EBCI_UART_GPIO_BASE) + 0x00u)
#define GPIO_OSPEEDR REG((EBCI_UART_GPIO_BASE) + 0x08u)
#define GPIO_PUPDR REG((EBCI_UART_GPIO_BASE) + 0x0Cu)
#define GPIO_AFR(pin) REG((EBCI_UART_GPIO_BASE) + 0x20u + 4u * ((pin) / 8u))

#define USART_CR1 REG((EBCI_UART_BASE) + 0x00u)
#define USART_BRR REG((EBCI_UART_BASE) + 0x0Cu)
#define USART_ISR REG((EBCI_UART_BASE) + 0x1Cu)
#define USART_ICR REG((EBCI_UART_BASE) + 0x20u)
#define USART_RDR REG((EBCI_UART_BASE) + 0x24u)
#define USART_TDR REG((EBCI_UART_BASE) + 0x28u)
#define USART_CR1_UE (1u << 0)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_ISR_ORE (1u << 3)
#define USART_ISR_RXNE (1u << 5)
#define USART_ISR_TXE (1u << 7)
#define USART_ICR_ORECF (1u << 3)

#define DEMCR REG(0xE000EDFCu)
#define DWT_CTRL REG(0xE0001000u)
#define DWT_CYCCNT REG(0xE0001004u)
#define DWT_LAR REG(0xE0001FB0u)

void ebci_hal_fault(const uint32_t *exception_frame);

static const ebci_hal_info_t k_info = {
    EBCI_BOARD_NAME, EBCI_CPU_NAME, (uint32_t)(EBCI_CPU_HZ), (uint32_t)(EBCI_CPU_HZ), EBCI_TIMER_DWT,
};
static uint32_t g_cyc_last, g_cyc_high;

static void pin_alternate(uint32_t pin)
{
    GPIO_MODER = (GPIO_MODER & ~(3u << (2u * pin))) | (2u << (2u * pin));      /* alternate function */
    GPIO_OSPEEDR |= 3u << (2u * pin);                                          /* very high speed */
    GPIO_PUPDR = (GPIO_PUPDR & ~(3u << (2u * pin))) | (1u << (2u * pin));      /* pull-up: idle high */
    GPIO_AFR(pin) = (GPIO_AFR(pin) & ~(0xFu << (4u * (pin % 8u)))) | ((uint32_t)(EBCI_UART_AF) << (4u * (pin % 8u)));
}

void ebci_hal_init(void)
{
    RCC_AHB1ENR |= 1u << (EBCI_RCC_GPIO_EN_BIT);
    RCC_APB1ENR |= 1u << (EBCI_RCC_UART_EN_BIT);
    (void)RCC_APB1ENR;   /* read back: the clock is on before the first register write (RM0385 5.2.12) */
    pin_alternate(EBCI_UART_TX_PIN);
    pin_alternate(EBCI_UART_RX_PIN);
    USART_CR1 = 0;
    USART_BRR = ((EBCI_UART_CLK_HZ) + EBCI_BAUD / 2u) / EBCI_BAUD;   /* oversampling by 16 */
    USART_CR1 = USART_CR1_UE | USART_CR1_RE | USART_CR1_TE;

    DEMCR |= 1u << 24;          /* TRCENA */
    DWT_LAR = 0xC5ACCE55u;      /* the Cortex-M7 DWT is locked after reset */
    DWT_CYCCNT = 0;
    DWT_CTRL |= 1u;             /* CYCCNTENA */
}

const ebci_hal_info_t *ebci_hal_info(void)
{
    return &k_info;
}

int ebci_serial_getc(void)
{
    for (;;) {
        uint32_t isr = USART_ISR;
        if (isr & USART_ISR_RXNE) {
            return (int)(USART_RDR & 0xFFu);
        }
        if (isr & USART_ISR_ORE) {
            /* a byte was lost: clear the flag so reception goes on; the frame's CRC catches the gap
             * and the host retransmits */
            USART_ICR = USART_ICR_ORECF;
        }
    }
}

void ebci_serial_write(const uint8_t *data, size_t n)
{
    while (n--) {
        while ((USART_ISR & USART_ISR_TXE) == 0) {
        }
        USART_TDR = *data++;
    }
}

void ebci_serial_flush(void)
{
}

void ebci_ticks_reset(void)
{
    DWT_CYCCNT = 0;
    g_cyc_last = 0;
    g_cyc_high = 0;
}

/* CYCCNT is 32 bits (268 s at 16 MHz): extend it, assuming one read per wrap at least */
uint64_t ebci_ticks_read(void)
{
    uint32_t now = DWT_CYCCNT;
    if (now < g_cyc_last) {
        g_cyc_high++;
    }
    g_cyc_last = now;
    return ((uint64_t)g_cyc_high << 32) | now;
}

/* Called by HardFault_Handler with the stacked r0-r3, r12, lr, pc, xpsr. */
__attribute__((noreturn)) void ebci_hal_fault(const uint32_t *exception_frame)
{
    ebci_device_report_fault(exception_frame[6]);
    for (;;) {
    }
}
