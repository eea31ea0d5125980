"""Reads the metadata (key/value) section of a GGUF file: a small independent reader so that
tests can take the chat template and special tokens straight from the model file."""
import struct

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q",
            11: "<q", 12: "<d"}


def read_metadata(path, keys=None):
    """{key: value} for every key (or only `keys`); arrays of strings are skipped unless asked."""
    out = {}
    with open(path, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        version, _n_tensors, n_kv = struct.unpack("<IQQ", f.read(20))
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} unsupported")

        def string():
            (n,) = struct.unpack("<Q", f.read(8))
            return f.read(n).decode("utf-8", "replace")

        def value(t, keep):
            if t in _SCALARS:
                fmt = _SCALARS[t]
                return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
            if t == 8:
                return string()
            if t == 9:
                et, n = struct.unpack("<IQ", f.read(12))
                if et in _SCALARS and not keep:
                    f.seek(n * struct.calcsize(_SCALARS[et]), 1)
                    return None
                items = [value(et, keep) for _ in range(n)]
                return items if keep else None
            raise ValueError(f"{path}: unknown GGUF value type {t}")

        for _ in range(n_kv):
            key = string()
            (t,) = struct.unpack("<I", f.read(4))
            keep = keys is None or key in keys
            v = value(t, keep)
            if keep:
                out[key] = v
    return out
