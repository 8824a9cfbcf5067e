/* The TVM runtime symbols the generated kernels call, without the TVM runtime.
 *
 * ebci_tvm_shim.c defines TVMBackendAllocWorkspace / TVMBackendFreeWorkspace over one static
 * LIFO pool of EBCI_MODEL_WORKSPACE_BYTES (no malloc) and TVMFFIErrorSetRaisedFromCStr(Parts).
 * A request that does not fit, or a free that is not the most recent allocation, returns
 * NULL / -1 to the kernel (which then fails) and is recorded here for the decoder to report.
 * It also defines the function pointers __TVMBackendAllocWorkspace / __TVMBackendFreeWorkspace
 * through which TVM's LLVM-compiled kernels (Linux targets) reach the same two functions.
 */
#ifndef EBCI_TVM_SHIM_H
#define EBCI_TVM_SHIM_H

#include <stddef.h>
#include <stdint.h>

#include "ebci/ebci_status.h"

/* Forget all allocations and errors; the decoder calls it before each model run. */
void ebci_workspace_reset(void);

/* EBCI_OK, EBCI_ERR_WORKSPACE (bad alloc/free) or EBCI_ERR_MODEL (a kernel raised an error),
 * the first problem since the last reset. */
ebci_status_t ebci_workspace_status(void);

/* WORKSPACE: the bytes requested by the failing call (0 for a bad free). */
uint32_t ebci_workspace_error_detail(void);

/* "kind: message" of the last TVMFFIErrorSetRaised* call, "" if none since the reset. */
const char *ebci_tvm_error_message(void);

/* Sizing companions: the pool's size and its high-water mark since boot, in bytes. */
size_t ebci_workspace_size(void);
size_t ebci_workspace_peak_bytes(void);

#endif /* EBCI_TVM_SHIM_H */
