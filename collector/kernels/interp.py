"""CPU execution of the Triton kernels through Triton's interpreter (tests only).

Set ``TRITON_INTERPRET=1`` before triton is imported. Triton 3.6's interpreter
calls ``int()`` on 1-element numpy arrays, which numpy >= 2.4 refuses; this
wraps its tensor patch to take the element explicitly.
"""
from __future__ import annotations

import numpy as np


def patch_interpreter() -> bool:
    try:
        from triton.runtime import interpreter as itp
    except Exception:  # pragma: no cover
        return False
    if getattr(itp, "_perfwh_patched", False):
        return True
    orig = itp._patch_lang_tensor

    def patched(tensor, scope):
        orig(tensor, scope)
        scope.set_attr(tensor, "__index__",
                       lambda self: int(np.asarray(self.handle.data).reshape(-1)[0]))

    itp._patch_lang_tensor = patched
    itp._perfwh_patched = True
    return True
