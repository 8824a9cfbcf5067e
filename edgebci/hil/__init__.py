"""HIL stage: the framed serial protocol (frames), stop-and-wait requests (link) and device
sessions on QEMU boards, Linux processes and physical ports (launch).

Kept import-free so `import edgebci.hil` stays fast; import the submodules you need.
"""
