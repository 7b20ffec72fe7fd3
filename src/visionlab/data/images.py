"""Image files -> uint8 RGB arrays of one size: any PIL mode converted, EXIF rotation applied,
decompression bombs refused from the header."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

# PIL's own bomb check is a process-wide warning/error pair; load_image checks data.max_pixels instead,
# from the header, so that the limit is a config key and an oversized file is skipped like a broken one.
Image.MAX_IMAGE_PIXELS = None
MAX_PIXELS = 150_000_000  # data.max_pixels' default: above real photos (100 MP cameras), below a 200 MP bomb


class ImageTooLarge(ValueError):
    """An image whose header promises more pixels than data.max_pixels (never decoded)."""


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB: 16-bit and float scaled, transparency composited on black,
    palette / CMYK / grayscale converted, EXIF rotation applied."""
    img = ImageOps.exif_transpose(img) or img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        if img.mode != "F" or arr.max() > 1.0:
            arr = arr / 257.0 if arr.max() > 255 else arr
        else:
            arr = arr * 255.0
        img = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, img)
    return img.convert("RGB") if img.mode != "RGB" else img


INTERPOLATIONS = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
    "area": Image.BOX,
}


def load_image(source, size: int, interpolation: str = "bilinear", max_pixels: int | None = MAX_PIXELS) -> np.ndarray:
    """A path or an array -> size x size x 3 uint8 RGB. Raises OSError/ValueError on a bad file, and
    ImageTooLarge, from the header alone, when it has more than max_pixels (None: no limit)."""
    if isinstance(source, np.ndarray):
        arr = source if source.ndim == 3 else source[..., None]
        arr = arr[..., :3]  # drop an alpha channel
        img = Image.fromarray(np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr)
    else:
        img = Image.open(source)
        if max_pixels is not None and img.width * img.height > max_pixels:
            raise ImageTooLarge(
                f"{img.width}x{img.height} = {img.width * img.height / 1e6:.0f} megapixels, more than "
                f"data.max_pixels={max_pixels} (a decompression bomb?); if the image is real, raise "
                "data.max_pixels"
            )
        if img.format == "JPEG" and img.mode in ("RGB", "L"):
            img.draft(img.mode, (size, size))  # decode big JPEGs at reduced scale: much faster
        img.load()
        img = to_rgb(img)
    if img.size != (size, size):
        img = img.resize((size, size), INTERPOLATIONS[interpolation])
    return np.array(img, dtype=np.uint8)
