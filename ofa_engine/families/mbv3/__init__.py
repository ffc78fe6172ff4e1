"""families.mbv3."""
