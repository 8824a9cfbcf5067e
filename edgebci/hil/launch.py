"""Device sessions for HIL runs (stage: hil): a QEMU board, a Linux process, or a real port.

Linux-class targets: a process built for this machine runs directly; one built for another
architecture (the Jetson's aarch64) runs under QEMU user mode (`qemu-aarch64 -L /usr/aarch64-linux-gnu`),
which checks the ABI and the numbers, not the speed. A real Jetson is reached with
`--port ssh://user@host[:port]/path/to/ebci_device`: the process is started over ssh and the protocol
runs on its stdin/stdout, like a local process; any other --port is a pyserial URL or device path.

    with start_qemu(target, image.path, out / "qemu.log") as dev:
        result, attempts = dev.link.decode_window(x)

Every start_* function opens the link, asks HELLO (so a board that never answers fails here,
with its log) and returns a DeviceSession; leaving the `with` block, or close(), closes the
port and always stops the emulator or process.

QEMU runs with the board's UART on a local TCP socket (server, wait=on: the guest starts only
once the host is connected, so no byte is lost) and -icount shift=N,align=off,sleep=off, under
which SysTick counts are exactly repeatable and proportional to instructions: report them as
a QEMU count, never as cycles. pyserial is imported only here, when a session starts.
"""
from __future__ import annotations

import fcntl
import os
import platform
import select
import shlex
import shutil
import socket
import struct
import subprocess
import tempfile
import termios
import time
import weakref
from pathlib import Path

from edgebci.errors import ConfigError, LinkError, ToolchainError, missing_extra
from edgebci.hil.frames import DeviceInfo
from edgebci.hil.link import POLL_S, Link
from edgebci.targets import Target

QEMU = "qemu-system-arm"
QEMU_PACKAGES = "qemu-system-arm"
BOOT_TIMEOUT_S = 10.0
# How long the host waits for an emulated board's reply before resending: QEMU's speed follows the host's
# load (a 10 M-instruction window takes ~2 s on an idle core, several times that on a busy one), and a resend
# only costs a repeat of the device's last reply, so wait long enough that a busy host is not a broken link.
QEMU_REPLY_TIMEOUT_S = 15.0
_STOP_WAIT_S = 3.0


class _TargetDefault:
    def __repr__(self) -> str:
        return "target.qemu_icount_shift"


TARGET_DEFAULT = _TargetDefault()


def _import_serial():
    try:
        import serial
    except ImportError:
        raise missing_extra("serial", "hil") from None
    return serial


def _stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(_STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _log_tail(log_path: Path | None, n_lines: int = 15) -> str:
    if log_path is None or not log_path.exists():
        return "(no log)"
    lines = log_path.read_text(errors="replace").splitlines()[-n_lines:]
    return "\n".join(lines) if lines else "(empty log)"


class DeviceSession:
    """An open link to one device: `.link` (edgebci.hil.link.Link), `.info` (its HELLO answer),
    `.description`, `.log_path`. A context manager; close() is idempotent."""

    def __init__(self, link: Link, description: str, *, process: subprocess.Popen | None = None,
                 log_path: Path | None = None):
        self.link = link
        self.description = description
        self.log_path = log_path
        self.process = process
        self.info: DeviceInfo | None = None
        self._stop = weakref.finalize(self, _stop_process, process) if process is not None else None

    def close(self) -> None:
        try:
            self.link.port.close()
        except OSError:
            pass   # the device side may already be gone; stopping it below is what matters
        if self._stop is not None:
            self._stop()

    def __enter__(self) -> DeviceSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DeviceSession({self.description})"


def _probe(session: DeviceSession, boot_timeout_s: float) -> DeviceSession:
    """HELLO with short retries until boot_timeout_s; the session closes if nobody answers."""
    per_try_s = min(1.0, boot_timeout_s)
    try:
        session.info = session.link.hello(timeout_s=per_try_s, retries=max(0, round(boot_timeout_s / per_try_s) - 1))
    except LinkError as e:
        session.close()
        log = f"\nlast lines of the device log:\n{_log_tail(session.log_path)}" if session.log_path else ""
        raise LinkError(f"{session.description} did not answer HELLO (boot timeout {boot_timeout_s:.0f} s): {e}{log}") from None
    return session


class PipePort:
    """The part of pyserial's Serial that Link uses (read, write, flush, in_waiting, timeout,
    close), over a child process' stdin and stdout."""

    def __init__(self, process: subprocess.Popen):
        self._process = process
        self._fd_in = process.stdout.fileno()
        os.set_blocking(self._fd_in, False)
        self.timeout = POLL_S

    @property
    def in_waiting(self) -> int:
        return struct.unpack("i", fcntl.ioctl(self._fd_in, termios.FIONREAD, b"\0\0\0\0"))[0]

    def read(self, size: int = 1) -> bytes:
        ready, _, _ = select.select([self._fd_in], [], [], self.timeout)
        if not ready:
            return b""
        try:
            data = os.read(self._fd_in, max(1, size))
        except BlockingIOError:
            return b""
        if not data:
            raise OSError(f"the device process (pid {self._process.pid}) closed its output; "
                          f"exit code {self._process.poll()}")
        return data

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            view = view[self._process.stdin.write(view):]
        return len(data)

    def flush(self) -> None:
        self._process.stdin.flush()

    def close(self) -> None:
        self._process.stdin.close()   # EOF: the device process ends on its own


# ELF e_machine -> (QEMU user-mode emulator, Debian cross sysroot, Debian packages)
QEMU_USER = {183: ("qemu-aarch64", "/usr/aarch64-linux-gnu", "qemu-user gcc-aarch64-linux-gnu"),
             40: ("qemu-arm", "/usr/arm-linux-gnueabihf", "qemu-user gcc-arm-linux-gnueabihf")}
_HOST_ELF_MACHINE = {"x86_64": 62, "aarch64": 183, "arm64": 183, "armv7l": 40}
# QEMU user mode runs our decoder process several times slower than native (measured 3-5x here): the link
# timeouts grow by this factor for a process run under it
QEMU_USER_SLOWDOWN = 4.0


def _elf_machine(exe: Path) -> int | None:
    head = exe.read_bytes()[:20]
    return int.from_bytes(head[18:20], "little") if head[:4] == b"\x7fELF" else None


def process_command(exe: Path, args: tuple[str, ...] = ()) -> list[str]:
    """How to run a Linux device build here: directly, or under QEMU user mode when it was built for
    another architecture (with the cross sysroot, so its dynamic loader and libc are found)."""
    machine = _elf_machine(exe)
    if machine is None or machine == _HOST_ELF_MACHINE.get(platform.machine()):
        return [str(exe), *args]
    if machine not in QEMU_USER:
        raise ConfigError(f"{exe} is built for ELF machine {machine}, which this {platform.machine()} host cannot "
                          f"run or emulate; run it on its board (--port ssh://user@host/path/to/{exe.name})")
    emulator, sysroot, packages = QEMU_USER[machine]
    path = shutil.which(emulator)
    if path is None:
        raise ToolchainError(f"{emulator} is not on PATH, needed to run the {exe.name} built for another "
                             f"architecture; install it with: apt-get install {packages}")
    return [path, *(["-L", sysroot] if Path(sysroot).is_dir() else []), str(exe), *args]


def _start_pipe_process(cmd: list[str], description: str, log_path: Path, timeout_s: float,
                        boot_timeout_s: float) -> DeviceSession:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"$ {shlex.join(cmd)}\n".encode())
        log.flush()
        process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, bufsize=0)
    link = Link(PipePort(process), timeout_s=timeout_s, log_path=log_path)
    return _probe(DeviceSession(link, description, process=process, log_path=log_path), boot_timeout_s)


def start_process(exe: Path, log_path: Path, *, args: tuple[str, ...] = (), timeout_s: float = 5.0,
                  boot_timeout_s: float = 5.0) -> DeviceSession:
    """Run a Linux build of the firmware (FirmwareImage.path for a "linux" target) and speak to
    it over its stdin/stdout; its stderr goes to log_path. A build for another architecture runs
    under QEMU user mode (process_command)."""
    exe, log_path = Path(exe), Path(log_path)
    if not exe.is_file():
        raise ConfigError(f"device executable {exe} does not exist; build it with edgebci.firmware.build_firmware")
    cmd = process_command(exe, args)
    emulated = cmd[0] != str(exe)
    if emulated:
        timeout_s, boot_timeout_s = timeout_s * QEMU_USER_SLOWDOWN, boot_timeout_s * QEMU_USER_SLOWDOWN
    description = f"process {exe.name}" + (f" under {Path(cmd[0]).name}" if emulated else "")
    return _start_pipe_process(cmd, description, log_path, timeout_s, boot_timeout_s)


def parse_ssh_url(url: str) -> tuple[str, int | None, str]:
    """ssh://[user@]host[:port]/absolute/path/to/ebci_device -> (user@host, port, path)."""
    from urllib.parse import urlsplit
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname or not parts.path or parts.path == "/":
        raise ConfigError(f"ssh port {url!r} must look like ssh://user@host[:port]/path/to/ebci_device (the Linux "
                          f"device build copied to the board, e.g. firmware/ebci_device of a jetson-orin artifact)")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"ssh port {url!r} has a bad port number; use ssh://user@host:22/path") from None
    login = f"{parts.username}@{parts.hostname}" if parts.username else parts.hostname
    return login, port, parts.path


def ssh_command(url: str, ssh: str = "ssh") -> list[str]:
    """The ssh command line that starts the device process on the board, protocol on its stdio.

    BatchMode: never prompt (a password prompt would read the protocol's bytes); -T: no tty, so the
    binary protocol is not translated; `exec` replaces the remote shell, so closing the link ends it."""
    login, port, path = parse_ssh_url(url)
    return [ssh, "-T", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=5", *(["-p", str(port)] if port else []),
            login, "exec", shlex.quote(path)]


def start_ssh(url: str, log_path: Path, *, timeout_s: float = 5.0, boot_timeout_s: float = 15.0) -> DeviceSession:
    """Start the device process on a remote Linux board (a Jetson) over ssh and speak to it on ssh's stdio;
    ssh's own messages and the remote stderr go to log_path."""
    ssh = shutil.which("ssh")
    if ssh is None:
        raise ToolchainError("ssh is not on PATH, needed to reach the board; install it with: "
                             "apt-get install openssh-client")
    login, _, path = parse_ssh_url(url)
    return _start_pipe_process(ssh_command(url, ssh), f"{path} on {login} over ssh", Path(log_path), timeout_s,
                               boot_timeout_s)


def _free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _qemu_command(qemu: str, target: Target, elf: Path, port: int, icount_shift: int | None) -> list[str]:
    cmd = [qemu, "-M", target.qemu_machine, "-nographic", "-monitor", "none", "-d", "guest_errors",
           "-kernel", str(elf), "-serial", f"tcp:127.0.0.1:{port},server=on,wait=on,nodelay=on"]
    if icount_shift is not None:
        cmd += ["-icount", f"shift={icount_shift},align=off,sleep=off"]
    return cmd


def _connect_socket(serial, port: int, process: subprocess.Popen, boot_timeout_s: float):
    """pyserial socket:// to QEMU's serial server, or None if QEMU exited first."""
    deadline = time.monotonic() + boot_timeout_s
    while process.poll() is None:
        try:
            ser = serial.serial_for_url(f"socket://127.0.0.1:{port}", timeout=POLL_S)
        except serial.SerialException:
            if time.monotonic() > deadline:
                raise LinkError(f"QEMU did not open its serial port 127.0.0.1:{port} within "
                                f"{boot_timeout_s:.0f} s") from None
            time.sleep(0.02)
            continue
        sock = getattr(ser, "_socket", None)   # pyserial leaves Nagle on: 45 ms per small reply
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return ser
    return None


def start_qemu(target: Target, elf: Path, log_path: Path, icount_shift: int | None | _TargetDefault = TARGET_DEFAULT, *,
               timeout_s: float = QEMU_REPLY_TIMEOUT_S, boot_timeout_s: float = BOOT_TIMEOUT_S) -> DeviceSession:
    """Boot an ELF on the target's QEMU machine and connect to its UART.

    icount_shift : -icount shift (virtual ns per instruction = 2**shift); by default the
                   target's qemu_icount_shift; None runs without -icount (ticks are then noise)
    log_path     : QEMU's stdout and stderr (guest errors included)
    """
    if target.qemu_machine is None:
        raise ConfigError(f"target {target.name} is not emulated (no connect.qemu_machine); "
                          f"use open_port() for a physical board")
    elf, log_path = Path(elf), Path(log_path)
    if not elf.is_file():
        raise ConfigError(f"firmware image {elf} does not exist; build it with edgebci.firmware.build_firmware")
    qemu = shutil.which(QEMU)
    if qemu is None:
        raise ToolchainError(f"{QEMU} is not on PATH, needed to emulate {target.name}; install it with: "
                             f"apt-get install {QEMU_PACKAGES}")
    shift = target.qemu_icount_shift if icount_shift is TARGET_DEFAULT else icount_shift
    serial = _import_serial()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):   # another process may take the free port before QEMU binds it
        port = _free_tcp_port()
        cmd = _qemu_command(qemu, target, elf, port, shift)
        with open(log_path, "ab") as log:
            log.write(f"$ {shlex.join(cmd)}\n".encode())
            log.flush()
            process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            ser = _connect_socket(serial, port, process, boot_timeout_s)
        except LinkError:
            _stop_process(process)
            raise
        if ser is not None:
            break
        if "Address already in use" not in _log_tail(log_path):
            raise ToolchainError(f"{QEMU} exited with code {process.returncode} before opening its serial port; "
                                 f"last lines of {log_path}:\n{_log_tail(log_path)}")
    else:
        raise ToolchainError(f"{QEMU} could not bind a local TCP port in 3 tries; see {log_path}")
    link = Link(ser, timeout_s=timeout_s, log_path=log_path)
    description = f"QEMU {target.qemu_machine} running {elf.name}" + (f" (icount shift {shift})" if shift is not None else "")
    return _probe(DeviceSession(link, description, process=process, log_path=log_path), boot_timeout_s)


def open_port(url_or_path: str, baudrate: int = 115200, *, timeout_s: float = 5.0,
              boot_timeout_s: float = 5.0, log_path: Path | None = None) -> DeviceSession:
    """A physical board on a serial port ("/dev/ttyACM0"), any pyserial URL ("socket://host:port"), or a
    Linux board's device process started over ssh ("ssh://user@host/path/to/ebci_device")."""
    if url_or_path.startswith("ssh://"):
        log = Path(log_path) if log_path else Path(tempfile.gettempdir()) / "edgebci-ssh-device.log"
        return start_ssh(url_or_path, log, timeout_s=timeout_s)
    serial = _import_serial()
    try:
        ser = serial.serial_for_url(url_or_path, baudrate=baudrate, timeout=POLL_S)
    except (serial.SerialException, ValueError) as e:
        raise LinkError(f"cannot open serial port {url_or_path!r}: {e}; check the cable and EDGEBCI_PORT") from None
    link = Link(ser, timeout_s=timeout_s)
    return _probe(DeviceSession(link, f"board on {url_or_path} at {baudrate} baud"), boot_timeout_s)
