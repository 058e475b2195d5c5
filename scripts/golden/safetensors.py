#!/usr/bin/python3
"""Golden files for tests/test_safetensors.cpp, written by Python.

Debian 12 has no python3-safetensors, so this script writes safetensors files
byte for byte by the format's specification (github.com/huggingface/safetensors,
README "Format", and its writer's layout), with only json, struct and zlib
from the standard library and tensor bytes from real PyTorch:

  8 bytes    N, the header length, unsigned little-endian
  N bytes    compact UTF-8 JSON: {"__metadata__": {...}, name: {"dtype",
             "shape", "data_offsets": [begin, end]}, ...}, padded with spaces
             to a multiple of 8 bytes
  the rest   the tensors' bytes, row-major, little-endian, in the order of
             the header: by decreasing dtype alignment, then by name

It writes tests/golden/safetensors.h with
  * plain_file():       metadata {"format": "pt"}, as any other writer would;
  * checksummed_file(): the same plus dlcore's "dlcore.crc32" entry, computed
                        here from its definition in docs/safetensors.md;
  * tensors():          every tensor's name, dtype, shape and values
                        (floats as exact hexadecimal doubles), from PyTorch.

Run with Debian's python3-torch:  /usr/bin/python3 scripts/golden/safetensors.py
"""
import json
import os
import struct
import subprocess
import sys
import zlib

import torch

# The reference implementation's dtype order (increasing alignment).
DTYPES = [
    ("BOOL", torch.bool),
    ("U8", torch.uint8),
    ("I8", torch.int8),
    ("I16", torch.int16),
    ("F16", torch.float16),
    ("BF16", torch.bfloat16),
    ("I32", torch.int32),
    ("F32", torch.float32),
    ("F64", torch.float64),
    ("I64", torch.int64),
]
ORDER = {name: i for i, (name, _) in enumerate(DTYPES)}
NAME = {dtype: name for name, dtype in DTYPES}
FLOATS = {"F16", "BF16", "F32", "F64"}


def tensors():
    """Every dtype, a 0-d and an empty tensor, a non-ASCII name."""
    return {
        "float32.matrix": torch.arange(6, dtype=torch.float32).reshape(2, 3) / 4
        - 0.5,
        "float64.vector": torch.tensor([1.0 / 3.0, -2.5, 1e300], dtype=torch.float64),
        "float16.values": torch.tensor(
            [0.5, -2.0, 65504.0, 2.0**-24], dtype=torch.float16
        ),
        "bfloat16.values": torch.tensor(
            [1.0, -3.140625, 2.0**100], dtype=torch.bfloat16
        ),
        "int64.values": torch.tensor(
            [-(2**62) - 7, 0, 2**62 + 11], dtype=torch.int64
        ),
        "int32.grid": torch.tensor(
            [[-(2**31), -1], [0, 2**31 - 1]], dtype=torch.int32
        ),
        "int16.values": torch.tensor([-32768, 12345, 32767], dtype=torch.int16),
        "int8.values": torch.tensor([-128, -1, 0, 127], dtype=torch.int8),
        "uint8.values": torch.tensor([0, 128, 255], dtype=torch.uint8),
        "bool.mask": torch.tensor([True, False, False, True, True]),
        "scalar": torch.tensor(42.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
        "unicode.gewicht.\u00e4": torch.tensor([7], dtype=torch.uint8),
        "transposed": torch.arange(6, dtype=torch.int32).reshape(2, 3).t(),
    }


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)  # numpy has no bfloat16; same bytes
    return t.numpy().tobytes()


def u64(v):
    return struct.pack("<Q", v)


def s(text):
    b = text.encode("utf-8")
    return u64(len(b)) + b


def header_crc(entries, metadata):
    """dlcore's canonical header CRC-32 (docs/safetensors.md)."""
    meta = {k: v for k, v in metadata.items() if k != "dlcore.crc32"}
    canon = u64(len(meta))
    for k in sorted(meta, key=lambda k: k.encode("utf-8")):
        canon += s(k) + s(meta[k])
    canon += u64(len(entries))
    for name, dtype, shape, begin, end in sorted(
        entries, key=lambda e: (e[3], e[4], e[0].encode("utf-8"))
    ):
        canon += s(name) + s(dtype) + u64(len(shape))
        for d in shape:
            canon += u64(d)
        canon += u64(begin) + u64(end)
    return zlib.crc32(canon) & 0xFFFFFFFF


def write(named, metadata, with_crc):
    items = sorted(
        named.items(),
        key=lambda kv: (-ORDER[NAME[kv[1].dtype]], kv[0].encode("utf-8")),
    )
    entries = []
    data = b""
    for name, t in items:
        b = tensor_bytes(t)
        entries.append((name, NAME[t.dtype], list(t.shape), len(data), len(data) + len(b)))
        data += b
    metadata = dict(metadata)
    if with_crc:
        metadata["dlcore.crc32"] = "header=%08x,data=%08x" % (
            header_crc(entries, metadata),
            zlib.crc32(data) & 0xFFFFFFFF,
        )
    header = {"__metadata__": {k: metadata[k] for k in sorted(metadata, key=lambda k: k.encode("utf-8"))}}
    for name, dtype, shape, begin, end in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return u64(len(text)) + text + data


def c_string(text):
    out = '"'
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if byte < 0x80 and ch.isprintable() and ch not in '"\\?':
            out += ch
        else:
            out += "\\%03o" % byte
    return out + '"'


def c_bytes(data, indent):
    lines = []
    for i in range(0, len(data), 12):
        lines.append(indent + ", ".join("0x%02x" % b for b in data[i : i + 12]) + ",")
    return lines


def main():
    assert sys.byteorder == "little", "the format stores little-endian bytes"
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "..", "..", "tests", "golden", "safetensors.h")
    named = tensors()
    plain = write(named, {"format": "pt"}, with_crc=False)
    checked = write(named, {"format": "pt"}, with_crc=True)
    n = struct.unpack("<Q", checked[:8])[0]
    lines = [
        "// Generated by scripts/golden/safetensors.py with PyTorch "
        + torch.__version__
        + "; do not edit.",
        "#pragma once",
        "",
        "#include <cstdint>",
        "#include <vector>",
        "",
        "namespace golden_safetensors {",
        "",
        "/// One tensor of the golden files, as PyTorch holds it.",
        "struct Tensor {",
        "  const char* name;",
        "  const char* dtype;",
        "  std::vector<int64_t> shape;",
        "  /// Row-major values of F16, BF16, F32, F64 tensors, exactly.",
        "  std::vector<double> floats;",
        "  /// Row-major values of the integer and BOOL tensors.",
        "  std::vector<int64_t> ints;",
        "};",
        "",
        "inline std::vector<Tensor> tensors() {",
        "  return {",
    ]
    for name, t in named.items():
        dtype = NAME[t.dtype]
        flat = t.reshape(-1)
        shape = ", ".join(str(d) for d in t.shape)
        if dtype in FLOATS:
            floats = ", ".join(float(v).hex() for v in flat.double().tolist())
            ints = ""
        else:
            floats = ""
            ints = ", ".join("%dLL" % v for v in flat.long().tolist())
        lines.append(
            "      {%s, %s, {%s}, {%s}, {%s}}," % (c_string(name), c_string(dtype), shape, floats, ints)
        )
    lines += [
        "  };",
        "}",
        "",
        "/// The header of checksummed_file() (N = %d bytes):" % n,
    ]
    header_text = checked[8 : 8 + n].decode("utf-8")
    for i in range(0, len(header_text), 72):
        lines.append("///   " + header_text[i : i + 72].encode("ascii", "backslashreplace").decode("ascii"))
    lines += [
        "",
        "/// The tensors() with metadata {\"format\": \"pt\"}, no checksum.",
        "inline std::vector<unsigned char> plain_file() {",
        "  return {",
    ]
    lines += c_bytes(plain, "      ")
    lines += [
        "  };",
        "}",
        "",
        "/// The same with dlcore's \"dlcore.crc32\" metadata entry.",
        "inline std::vector<unsigned char> checksummed_file() {",
        "  return {",
    ]
    lines += c_bytes(checked, "      ")
    lines += ["  };", "}", "", "} // namespace golden_safetensors", ""]
    with open(out, "w") as f:
        f.write("\n".join(lines))
    # The committed header is clang-formatted (CI checks it).
    subprocess.run(["clang-format", "-i", out], check=False)


if __name__ == "__main__":
    main()
