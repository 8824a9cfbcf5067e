"""Firmware stage: firmware_bridge/ C + generated model C + board HAL -> ELF or Linux binary."""
from edgebci.firmware.build import FirmwareImage, build_firmware, build_host_library

__all__ = ["FirmwareImage", "build_firmware", "build_host_library"]
