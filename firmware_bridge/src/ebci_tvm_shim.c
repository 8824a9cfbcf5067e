/* TVM runtime stand-ins for the generated kernels: a static LIFO workspace and error capture.
 *
 * TVM's C codegen calls TVMBackendAllocWorkspace/TVMBackendFreeWorkspace for intermediate
 * buffers it could not fuse away, always freeing in reverse order, and
 * TVMFFIErrorSetRaisedFromCStr(Parts) on a failed check. The device has no heap and no TVM
 * runtime, so one static pool serves them; a problem is recorded and reported as an ERROR
 * frame instead of crashing (see ebci/ebci_tvm_shim.h).
 */

#include "ebci_model.h"
#include "tvm/ffi/c_api.h"

#include "ebci/ebci_tvm_shim.h"

/* Declared by TVM's tvm/runtime/c_backend_api.h, which the compiler does not ship. */
void *TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code_hint,
                               int dtype_bits_hint);
int TVMBackendFreeWorkspace(int device_type, int device_id, void *ptr);

#ifndef EBCI_WORKSPACE_ALIGN
/* enough for any scalar or SIMD (MVE, SSE) load of the C kernels; builds linking TVM's LLVM kernels
 * pass -DEBCI_WORKSPACE_ALIGN=64u: that code assumes 64-byte aligned workspace (AVX-512 stores) */
#define EBCI_WORKSPACE_ALIGN 16u
#endif
#define EBCI_WORKSPACE_MAX_LIVE 16u   /* nested allocations alive at once */
/* EBCI_MODEL_WORKSPACE_BYTES counts requested bytes; each live block may lose up to
 * ALIGN - 1 bytes to alignment, so reserve that on top. */
#define EBCI_WORKSPACE_POOL_BYTES \
    ((size_t)EBCI_MODEL_WORKSPACE_BYTES + (size_t)EBCI_WORKSPACE_MAX_LIVE * EBCI_WORKSPACE_ALIGN)
#define EBCI_TVM_MESSAGE_MAX 96u

static _Alignas(EBCI_WORKSPACE_ALIGN) uint8_t g_pool[EBCI_WORKSPACE_POOL_BYTES];
static size_t g_top;                               /* first free byte */
static size_t g_peak;
static size_t g_saved_top[EBCI_WORKSPACE_MAX_LIVE];   /* g_top before each live allocation */
static unsigned g_n_live;
static ebci_status_t g_status;
static uint32_t g_detail;
static char g_message[EBCI_TVM_MESSAGE_MAX];

static size_t align_up(size_t n)
{
    return (n + EBCI_WORKSPACE_ALIGN - 1u) & ~(size_t)(EBCI_WORKSPACE_ALIGN - 1u);
}

static void record_failure(ebci_status_t status, uint32_t detail)
{
    if (g_status == EBCI_OK) {   /* keep the first problem: later ones are usually its echo */
        g_status = status;
        g_detail = detail;
    }
}

static size_t append_text(size_t at, const char *text)
{
    while (text != NULL && *text != '\0' && at + 1u < EBCI_TVM_MESSAGE_MAX) {
        g_message[at++] = *text++;
    }
    g_message[at] = '\0';
    return at;
}

void ebci_workspace_reset(void)
{
    g_top = 0;
    g_n_live = 0;
    g_status = EBCI_OK;
    g_detail = 0;
    g_message[0] = '\0';
}

ebci_status_t ebci_workspace_status(void)
{
    return g_status;
}

uint32_t ebci_workspace_error_detail(void)
{
    return g_detail;
}

const char *ebci_tvm_error_message(void)
{
    return g_message;
}

size_t ebci_workspace_size(void)
{
    return sizeof g_pool;
}

size_t ebci_workspace_peak_bytes(void)
{
    return g_peak;
}

void *TVMBackendAllocWorkspace(int device_type, int device_id, uint64_t nbytes, int dtype_code_hint,
                               int dtype_bits_hint)
{
    (void)device_type;
    (void)device_id;
    (void)dtype_code_hint;
    (void)dtype_bits_hint;
    size_t start = align_up(g_top);
    if (g_n_live == EBCI_WORKSPACE_MAX_LIVE || start > sizeof g_pool || nbytes > sizeof g_pool - start) {
        record_failure(EBCI_ERR_WORKSPACE, nbytes > UINT32_MAX ? UINT32_MAX : (uint32_t)nbytes);
        return NULL;
    }
    g_saved_top[g_n_live++] = g_top;
    g_top = start + (size_t)nbytes;
    if (g_top > g_peak) {
        g_peak = g_top;
    }
    return g_pool + start;
}

int TVMBackendFreeWorkspace(int device_type, int device_id, void *ptr)
{
    (void)device_type;
    (void)device_id;
    if (g_n_live == 0 || (uint8_t *)ptr != g_pool + align_up(g_saved_top[g_n_live - 1u])) {
        record_failure(EBCI_ERR_WORKSPACE, 0);   /* not the most recent block: not LIFO */
        return -1;
    }
    g_top = g_saved_top[--g_n_live];
    return 0;
}

void TVMFFIErrorSetRaisedFromCStr(const char *kind, const char *message)
{
    const char *parts[1] = { message };
    TVMFFIErrorSetRaisedFromCStrParts(kind, parts, 1);
}

void TVMFFIErrorSetRaisedFromCStrParts(const char *kind, const char **message_parts, int32_t num_parts)
{
    size_t at = append_text(0, kind);
    at = append_text(at, ": ");
    for (int32_t i = 0; i < num_parts; i++) {
        at = append_text(at, message_parts[i]);   /* NULL parts are skipped, as TVM documents */
    }
    record_failure(EBCI_ERR_MODEL, 0);
}

/* TVM's LLVM backend (Linux targets, edgebci.compile.llvm) does not call the two workspace
 * functions by name: its kernels call through these function pointers, which it declares weak
 * and which the TVM runtime fills in when it loads a library. Defining them here, pointing at
 * the pool above, is that loading step done at link time. The C kernels never read them. */
void *(*__TVMBackendAllocWorkspace)(int, int, uint64_t, int, int) = TVMBackendAllocWorkspace;
int (*__TVMBackendFreeWorkspace)(int, int, void *) = TVMBackendFreeWorkspace;
