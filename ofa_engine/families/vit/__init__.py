"""families.vit: an elastic Vision Transformer."""
