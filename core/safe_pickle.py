"""A restricted unpickler for FLAME model files.

Real FLAME 2020 pickles were written under Python 2 with `chumpy` installed and hold `chumpy.ch.Ch`
objects. We never import chumpy: its classes are replaced by a placeholder that keeps the array, and
every other class outside a short allow-list is refused, which also closes pickle's code-execution hole.
"""
from __future__ import annotations

import codecs
import copyreg
import io
import pickle
from typing import Any

import numpy as np

from .errors import ModelFileError


class _ChumpyArray:
    """Stands in for `chumpy.ch.Ch`: keeps the pickled state, whose `x` is the array."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state if isinstance(state, dict) else {"x": state}

    def to_numpy(self) -> np.ndarray:
        if "x" not in self.state:
            raise ModelFileError("a chumpy object in the model file holds no array ('x')")
        return np.asarray(self.state["x"])


class _SparseMatrix:
    """Stands in for scipy.sparse csc/csr matrices (FLAME 2020's J_regressor) so scipy is not needed."""

    column_major = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.state: dict = {}

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def to_numpy(self) -> np.ndarray:
        st = self.state
        shape = tuple(st.get("_shape") or st.get("shape"))
        data, indices, indptr = np.asarray(st["data"]), np.asarray(st["indices"]), np.asarray(st["indptr"])
        dense = np.zeros(shape, dtype=data.dtype)
        for outer in range(len(indptr) - 1):
            rows = indices[indptr[outer]:indptr[outer + 1]]
            values = data[indptr[outer]:indptr[outer + 1]]
            if self.column_major:
                dense[rows, outer] = values
            else:
                dense[outer, rows] = values
        return dense


_NUMPY = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): np.core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np.core.multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): np.core.multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): np.core.multiarray.scalar,
    ("copy_reg", "_reconstructor"): copyreg._reconstructor,
    ("copyreg", "_reconstructor"): copyreg._reconstructor,
    # Protocol-2 pickles written by Python 3 store bytes through codecs.encode (harmless).
    ("_codecs", "encode"): codecs.encode,
    # chumpy's pickled state holds plain sets (its dirty-variable bookkeeping).
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] == "chumpy":
            if name == "Ch":
                return _ChumpyArray
            raise ModelFileError(f"the model file holds a chumpy object of class {module}.{name}, "
                                 "which Kinesics cannot convert")
        if (module, name) in _NUMPY:
            return _NUMPY[(module, name)]
        if module.startswith("scipy.sparse") and name in ("csc_matrix", "csr_matrix"):
            return type(name, (_SparseMatrix,), {"column_major": name == "csc_matrix"})
        raise ModelFileError(f"the model file refers to {module}.{name}, which is not allowed in a head-model file")


def _to_plain(value: Any) -> Any:
    """Turn chumpy placeholders and sparse matrices into numpy arrays, recursively."""
    if isinstance(value, (_ChumpyArray, _SparseMatrix)):
        return value.to_numpy()
    if isinstance(value, dict):
        return {(k.decode() if isinstance(k, bytes) else k): _to_plain(v) for k, v in value.items()}
    return value


def load_pickle(data: bytes, source: str) -> dict:
    """Unpickle a model file's bytes with only numpy arrays, sparse matrices and chumpy arrays allowed.

    `source` names the file in errors. Python 2 pickles (FLAME 2020) are read with latin-1 strings.
    """
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except ModelFileError as err:
        raise ModelFileError(f"{source}: {err}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise ModelFileError(f"{source}: not a readable model file, it may be truncated or damaged ({err}). "
                             "Download it again from the FLAME website.") from None
    if not isinstance(obj, dict):
        raise ModelFileError(f"{source}: holds a {type(obj).__name__}, not a FLAME model dictionary")
    return _to_plain(obj)
