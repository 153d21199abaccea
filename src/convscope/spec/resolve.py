"""Moved to :mod:`convscope.commands.resolve` (command-line glue that reaches into the zoo and
checkpoints, which build on this package). This alias keeps ``from convscope.spec.resolve
import resolve`` working for code written before the move; it imports the new module only
when a name is asked for, so :mod:`convscope.spec` itself depends on neither.
"""
import importlib


def __getattr__(name):
    return getattr(importlib.import_module("convscope.commands.resolve"), name)
