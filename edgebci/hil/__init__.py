"""HIL stage: the framed serial protocol (frames), stop-and-wait requests (link), device sessions on
QEMU boards, Linux processes and physical ports (launch), cue windows one request each (runner), and
whole recordings streamed sample by sample with a decision per hop (stream).

Kept import-free so `import edgebci.hil` stays fast; import the submodules you need.
"""
