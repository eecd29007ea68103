#!/usr/bin/env python3
"""Converts a CTranslate2 Whisper model (model.bin, fp16) to whisper.cpp's ggml format.

Usage: whisper_ct2_to_ggml.py [--quantize q8_0] MODEL_BIN OUT MEL_FILTERS_NPZ TIKTOKEN

MEL_FILTERS_NPZ and TIKTOKEN come from the `openai-whisper` source package
(whisper/assets/mel_filters.npz and gpt2.tiktoken for English-only models, multilingual.tiktoken
for multilingual ones). Standard library only: CT2's binary layout, .npz (a zip of .npy files) and
the .npy header are parsed by hand. The output matches what whisper.cpp's
models/convert-pt-to-ggml.py writes for the same weights (fp16 matrices, fp32 vectors).

--quantize q8_0 stores the 2-D weight matrices as ggml Q8_0 (blocks of 32 int8 with an fp16 scale),
as whisper.cpp's `quantize` tool does: half the size, and on a CPU the encoder runs about twice as
fast (int8 dot products) with the same transcripts on this project's tests."""

import ast
import base64
import io
import struct
import sys
import zipfile

GGML_MAGIC = 0x67676D6C
# ggml tensor types and whisper.cpp's file type codes.
GGML_F32, GGML_F16, GGML_Q8_0 = 0, 1, 8
FTYPE_F16, FTYPE_Q8_0 = 1, 7
# whisper.cpp stores the quantization format version in the file type: version * 1000 + ftype.
GGML_QNT_VERSION = 2
QK8_0 = 32
# CTranslate2 DataType ids (include/ctranslate2/types.h).
CT2_DTYPES = {0: ("f", 4), 1: ("b", 1), 2: ("h", 2), 3: ("i", 4), 4: ("e", 2)}
CT2_FLOAT16 = 4


class ConvertError(Exception):
    pass


def read_ct2(path):
    """Returns ({name: (shape, dtype_id, bytes)}, aliases) from a CT2 model.bin."""
    variables, aliases = {}, {}
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(n):
        nonlocal pos
        if pos + n > len(data):
            raise ConvertError(f"{path}: truncated at byte {pos} (wanted {n} more bytes)")
        chunk = data[pos:pos + n]
        pos += n
        return chunk

    def u(fmt):
        return struct.unpack("<" + fmt, take(struct.calcsize(fmt)))[0]

    def string():
        n = u("H")
        return take(n)[:-1].decode("utf-8")

    version = u("I")
    if version < 5 or version > 6:
        raise ConvertError(f"{path}: CTranslate2 binary version {version} is not supported (5-6)")
    spec = string()
    if spec != "WhisperSpec":
        raise ConvertError(f"{path}: model spec is {spec!r}, not WhisperSpec")
    u("I")  # revision
    for _ in range(u("I")):
        name = string()
        ndim = u("B")
        shape = tuple(u("I") for _ in range(ndim))
        dtype = u("B")
        nbytes = u("I")
        variables[name] = (shape, dtype, take(nbytes))
    if pos < len(data):
        for _ in range(u("I")):
            alias = string()
            aliases[alias] = string()
    return variables, aliases


def read_npy(raw):
    """(shape, list of floats) of a little-endian float32/float64 C-order .npy."""
    if raw[:6] != b"\x93NUMPY":
        raise ConvertError("mel filters: not a .npy array")
    major = raw[6]
    if major == 1:
        hlen = struct.unpack("<H", raw[8:10])[0]
        start = 10
    else:
        hlen = struct.unpack("<I", raw[8:12])[0]
        start = 12
    header = ast.literal_eval(raw[start:start + hlen].decode("latin1"))
    if header.get("fortran_order"):
        raise ConvertError("mel filters: Fortran-order arrays are not supported")
    descr = header["descr"]
    codes = {"<f4": "f", "<f8": "d"}
    if descr not in codes:
        raise ConvertError(f"mel filters: dtype {descr} is not supported")
    shape = tuple(header["shape"])
    count = 1
    for d in shape:
        count *= d
    body = raw[start + hlen:]
    values = struct.unpack(f"<{count}{codes[descr]}", body[:count * struct.calcsize(codes[descr])])
    return shape, values


def mel_filters(npz_path, n_mels):
    with zipfile.ZipFile(npz_path) as z:
        name = f"mel_{n_mels}.npy"
        if name not in z.namelist():
            raise ConvertError(f"{npz_path}: no {name} (has {', '.join(z.namelist())})")
        return read_npy(z.read(name))


def tiktoken_vocab(path):
    tokens = []
    with open(path, "rb") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                token, rank = line.split()
                tokens.append((int(rank), base64.b64decode(token)))
            except ValueError as e:
                raise ConvertError(f"{path}:{lineno}: bad tiktoken line: {e}")
    tokens.sort()
    return [t for _, t in tokens]


def fp16_to_f32_bytes(raw):
    n = len(raw) // 2
    return struct.pack(f"<{n}f", *struct.unpack(f"<{n}e", raw))


def q8_0(raw):
    """fp16 matrix bytes -> ggml Q8_0 blocks: per 32 values an fp16 scale (max |x| / 127) and 32
    int8 (round half to even, as Python's round; whisper.cpp's quantizer rounds half away from
    zero, which changes no transcript)."""
    values = struct.unpack(f"<{len(raw) // 2}e", raw)
    if len(values) % QK8_0:
        raise ConvertError(f"a matrix of {len(values)} values is not a whole number of Q8_0 blocks")
    out = bytearray()
    pack_d, pack_q = struct.Struct("<e").pack, struct.Struct(f"<{QK8_0}b").pack
    for i in range(0, len(values), QK8_0):
        block = values[i:i + QK8_0]
        d = max(map(abs, block)) / 127.0
        # The scale is stored as fp16: quantize against the stored value.
        d = struct.unpack("<e", pack_d(d))[0]
        inv = 1.0 / d if d else 0.0
        out += pack_d(d)
        out += pack_q(*[max(-127, min(127, round(x * inv))) for x in block])
    return bytes(out)


def convert(model_bin, out_path, npz_path, tiktoken_path, quantize=None):
    variables, aliases = read_ct2(model_bin)

    def var(name):
        if name not in variables:
            name = aliases.get(name, name)
        if name not in variables:
            raise ConvertError(f"{model_bin}: missing tensor {name}")
        return variables[name]

    def scalar(name):
        shape, dtype, raw = var(name)
        code, size = CT2_DTYPES[dtype]
        return struct.unpack("<" + code, raw[:size])[0]

    emb_shape = var("decoder/embeddings/weight")[0]
    n_vocab, n_text_state = emb_shape
    n_audio_ctx, n_audio_state = var("encoder/position_encodings/encodings")[0]
    n_text_ctx = var("decoder/position_encodings/encodings")[0][0]
    n_mels = var("encoder/conv1/weight")[0][1]
    n_audio_layer = sum(1 for k in variables if k.startswith("encoder/layer_") and k.endswith("/ffn/linear_0/weight"))
    n_text_layer = sum(1 for k in variables if k.startswith("decoder/layer_") and k.endswith("/ffn/linear_0/weight"))
    n_audio_head = scalar("encoder/num_heads")
    n_text_head = scalar("decoder/num_heads")

    tensors = []  # (ggml name, shape, dtype id, raw bytes)

    def put(name, ct2_name, rows=None):
        shape, dtype, raw = var(ct2_name)
        if dtype != CT2_FLOAT16:
            raise ConvertError(f"{model_bin}: {ct2_name} is dtype {dtype}, expected float16")
        if rows is not None:
            # Take rows [a, b) of a fused matrix/vector (first dimension).
            a, b = rows
            row_bytes = 2
            for d in shape[1:]:
                row_bytes *= d
            raw = raw[a * row_bytes:b * row_bytes]
            shape = (b - a,) + tuple(shape[1:])
        tensors.append((name, shape, raw))

    def attn(prefix, ct2, fused_qkv, d):
        if fused_qkv:
            put(f"{prefix}.query.weight", f"{ct2}/linear_0/weight", (0, d))
            put(f"{prefix}.query.bias", f"{ct2}/linear_0/bias", (0, d))
            put(f"{prefix}.key.weight", f"{ct2}/linear_0/weight", (d, 2 * d))
            put(f"{prefix}.value.weight", f"{ct2}/linear_0/weight", (2 * d, 3 * d))
            put(f"{prefix}.value.bias", f"{ct2}/linear_0/bias", (2 * d, 3 * d))
            put(f"{prefix}.out.weight", f"{ct2}/linear_1/weight")
            put(f"{prefix}.out.bias", f"{ct2}/linear_1/bias")
        else:
            put(f"{prefix}.query.weight", f"{ct2}/linear_0/weight")
            put(f"{prefix}.query.bias", f"{ct2}/linear_0/bias")
            put(f"{prefix}.key.weight", f"{ct2}/linear_1/weight", (0, d))
            put(f"{prefix}.value.weight", f"{ct2}/linear_1/weight", (d, 2 * d))
            put(f"{prefix}.value.bias", f"{ct2}/linear_1/bias", (d, 2 * d))
            put(f"{prefix}.out.weight", f"{ct2}/linear_2/weight")
            put(f"{prefix}.out.bias", f"{ct2}/linear_2/bias")

    def ln(name, ct2):
        put(f"{name}.weight", f"{ct2}/gamma")
        put(f"{name}.bias", f"{ct2}/beta")

    def mlp(prefix, ct2):
        put(f"{prefix}.0.weight", f"{ct2}/linear_0/weight")
        put(f"{prefix}.0.bias", f"{ct2}/linear_0/bias")
        put(f"{prefix}.2.weight", f"{ct2}/linear_1/weight")
        put(f"{prefix}.2.bias", f"{ct2}/linear_1/bias")

    put("encoder.positional_embedding", "encoder/position_encodings/encodings")
    put("encoder.conv1.weight", "encoder/conv1/weight")
    put("encoder.conv1.bias", "encoder/conv1/bias")
    put("encoder.conv2.weight", "encoder/conv2/weight")
    put("encoder.conv2.bias", "encoder/conv2/bias")
    for i in range(n_audio_layer):
        b, c = f"encoder.blocks.{i}", f"encoder/layer_{i}"
        attn(f"{b}.attn", f"{c}/self_attention", True, n_audio_state)
        ln(f"{b}.attn_ln", f"{c}/self_attention/layer_norm")
        mlp(f"{b}.mlp", f"{c}/ffn")
        ln(f"{b}.mlp_ln", f"{c}/ffn/layer_norm")
    ln("encoder.ln_post", "encoder/layer_norm")
    put("decoder.positional_embedding", "decoder/position_encodings/encodings")
    put("decoder.token_embedding.weight", "decoder/embeddings/weight")
    for i in range(n_text_layer):
        b, c = f"decoder.blocks.{i}", f"decoder/layer_{i}"
        attn(f"{b}.attn", f"{c}/self_attention", True, n_text_state)
        ln(f"{b}.attn_ln", f"{c}/self_attention/layer_norm")
        attn(f"{b}.cross_attn", f"{c}/attention", False, n_text_state)
        ln(f"{b}.cross_attn_ln", f"{c}/attention/layer_norm")
        mlp(f"{b}.mlp", f"{c}/ffn")
        ln(f"{b}.mlp_ln", f"{c}/ffn/layer_norm")
    ln("decoder.ln", "decoder/layer_norm")

    (mel_rows, mel_cols), mel = mel_filters(npz_path, n_mels)
    vocab = tiktoken_vocab(tiktoken_path)

    with open(out_path, "wb") as out:
        out.write(struct.pack("<12i", GGML_MAGIC, n_vocab, n_audio_ctx, n_audio_state, n_audio_head,
                              n_audio_layer, n_text_ctx, n_text_state, n_text_head, n_text_layer,
                              n_mels, GGML_QNT_VERSION * 1000 + FTYPE_Q8_0 if quantize else FTYPE_F16))
        out.write(struct.pack("<2i", mel_rows, mel_cols))
        out.write(struct.pack(f"<{len(mel)}f", *mel))
        out.write(struct.pack("<i", len(vocab)))
        for token in vocab:
            out.write(struct.pack("<i", len(token)))
            out.write(token)
        for name, shape, raw in tensors:
            if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
                shape = (shape[0], 1)
            f32 = len(shape) < 2 or name in (
                "encoder.conv1.bias", "encoder.conv2.bias",
                "encoder.positional_embedding", "decoder.positional_embedding")
            ttype = GGML_F32 if f32 else GGML_F16
            if f32:
                raw = fp16_to_f32_bytes(raw)
            elif quantize and len(shape) == 2:
                # Matrices only: whisper.cpp keeps the conv kernels (3-D) in fp16.
                raw, ttype = q8_0(raw), GGML_Q8_0
            encoded = name.encode("utf-8")
            out.write(struct.pack("<3i", len(shape), len(encoded), ttype))
            for d in reversed(shape):
                out.write(struct.pack("<i", d))
            out.write(encoded)
            out.write(raw)
    return len(tensors)


def main(argv):
    args = argv[1:]
    quantize = None
    if args[:1] == ["--quantize"]:
        if args[1:2] != ["q8_0"]:
            print("whisper_ct2_to_ggml: --quantize takes q8_0", file=sys.stderr)
            return 2
        quantize, args = "q8_0", args[2:]
    if len(args) != 4:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        n = convert(*args, quantize=quantize)
    except (ConvertError, OSError, zipfile.BadZipFile, KeyError, struct.error) as e:
        print(f"whisper_ct2_to_ggml: {e}", file=sys.stderr)
        return 1
    print(f"whisper_ct2_to_ggml: wrote {args[1]} ({n} tensors)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
