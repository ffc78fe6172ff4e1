"""The one way a subnet config is named on a command line, for every family's space."""

from __future__ import annotations

from typing import Any

from ..files import read_json

__all__ = ["parse_config_text"]


def parse_config_text(space: Any, text: str, config_type: Any) -> Any:
    """'largest', 'smallest', 'random:SEED', a JSON object or the path of a JSON file, as a
    config of `space` validated by it; `config_type`: the family's config class (`from_json`,
    `from_dict`). `ValueError` naming what was given and what is allowed."""
    text = text.strip()
    if text == "largest":
        return space.largest()
    if text == "smallest":
        return space.smallest()
    if text.startswith("random:"):
        seed = text.split(":", 1)[1]
        if not seed.isdigit():
            raise ValueError(f"'random:SEED' needs a non-negative integer seed, got '{seed}'")
        return space.sample(int(seed))
    if text.startswith("{"):
        return space.validate(config_type.from_json(text))
    try:
        data = read_json(text, f"config file '{text}'")
    except OSError as exc:
        raise ValueError(f"config '{text}' is neither largest, smallest, random:SEED, a JSON "
                         f"object nor a readable file ({exc.strerror})") from None
    return space.validate(config_type.from_dict(data))
