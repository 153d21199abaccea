"""Spec ``type`` name -> Layer class. Each layer module registers its classes with
:func:`register`; the spec loader and the text-form parser look them up here."""
from __future__ import annotations

from typing import Dict, Type

LAYER_TYPES: Dict[str, type] = {}


def register(cls: Type) -> Type:
    """Class decorator: make ``cls`` available under ``cls.type_name`` in specs."""
    if not cls.type_name:
        raise TypeError(f"{cls.__name__} has no type_name")
    LAYER_TYPES[cls.type_name] = cls
    return cls
