"""The few LLVM instructions the CPU kernels need and Numba does not expose.

* ``prefetch(arr, i)``: a software prefetch of ``arr[i]``'s cache line. Bulk kernels issue it for
  the key a fixed distance ahead, so that by the time the probe reaches that key its bucket is
  (usually) already in cache: this is what turns a table lookup from one DRAM latency per key
  into something close to the machine's random-gather throughput.
* ``cas(arr, i, expected, new)``: an atomic compare-and-swap on ``arr[i]`` returning the old value.
  Refs use it, because a user's own ``prange`` loop may insert from several threads at once.
* ``atomic_add(arr, i, v)``: an atomic fetch-add returning the old value (refs' size counter);
  ``atomic_or(arr, i, v)`` likewise (a Bloom filter's bits set from several threads).
* ``line_equal_mask(arr, i, value)``: one vector compare of the 64 bytes starting at ``arr[i]``
  against ``value``: a bitmask with bit ``j`` set where ``arr[i + j] == value``. The bucket scan
  is three of these on one cache line (LLVM loads the line once): a match, an empty slot, a
  tombstone -- a handful of instructions whatever the number of slots in the bucket, where a
  slot-by-slot loop costs four per slot.
* bit casts between unsigned words and floats.

All of them take (1-D or flat-indexed) NumPy arrays and an integer index, so callers never see raw
pointers.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _element_pointer(context, builder, arr_type, arr, index):
    """Pointer to the ``index``-th element of a C-contiguous array, counted in elements."""
    array = context.make_array(arr_type)(context, builder, arr)
    return builder.gep(array.data, [index])


@intrinsic
def prefetch(typingctx, arr, index):
    """Hint the CPU to fetch the cache line holding ``arr.flat[index]`` (read, keep in all levels)."""
    if not isinstance(arr, types.Array) or not isinstance(index, types.Integer):
        return None
    sig = types.void(arr, index)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, arr, args[0], args[1])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # rw=0 (read), locality=3 (keep in every cache level), cache type=1 (data)
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


#: Bytes ``line_equal_mask`` compares: one cache line, one bucket.
LINE_BYTES = 64


@intrinsic
def line_equal_mask(typingctx, arr, index, value):
    """Bitmask (uint64) of which of the ``64 // itemsize`` words starting at ``arr.flat[index]``
    equal ``value`` (cast to the array's unsigned word type). The words must be in bounds."""
    if (not isinstance(arr, types.Array) or not isinstance(arr.dtype, types.Integer)
            or arr.dtype.signed or not isinstance(index, types.Integer)
            or not isinstance(value, types.Integer)):
        return None
    bits = arr.dtype.bitwidth
    lanes = LINE_BYTES * 8 // bits
    sig = types.uint64(arr, index, value)

    def codegen(context, builder, signature, args):
        word = ir.IntType(bits)
        vector = ir.VectorType(word, lanes)
        ptr = _element_pointer(context, builder, arr, args[0], args[1])
        # Element alignment only: a bucket is line-aligned, but the caller need not promise it.
        line = builder.load(builder.bitcast(ptr, vector.as_pointer()), align=bits // 8)
        v = args[2]
        if v.type.width > bits:
            v = builder.trunc(v, word)
        elif v.type.width < bits:
            v = builder.zext(v, word)
        splat = builder.insert_element(ir.Constant(vector, ir.Undefined), v, ir.IntType(32)(0))
        splat = builder.shuffle_vector(splat, ir.Constant(vector, ir.Undefined),
                                       ir.Constant(ir.VectorType(ir.IntType(32), lanes),
                                                   [0] * lanes))
        equal = builder.icmp_unsigned("==", line, splat)
        return builder.zext(builder.bitcast(equal, ir.IntType(lanes)), ir.IntType(64))

    return sig, codegen


@intrinsic
def cas(typingctx, arr, index, expected, new):
    """Atomic compare-and-swap on ``arr.flat[index]``; returns the value found there."""
    if not isinstance(arr, types.Array) or not isinstance(index, types.Integer):
        return None
    dtype = arr.dtype
    sig = dtype(arr, index, dtype, dtype)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, arr, args[0], args[1])
        pair = builder.cmpxchg(ptr, args[2], args[3], "acq_rel", "monotonic")
        return builder.extract_value(pair, 0)

    return sig, codegen


def _atomic_rmw(op: str, doc: str):
    """An intrinsic ``f(arr, i, v)`` that applies LLVM ``atomicrmw op`` to ``arr.flat[i]`` and
    returns the element's value before it (the fetch-and-op instructions: lock xadd, lock or)."""

    def typer(typingctx, arr, index, value):
        if not isinstance(arr, types.Array) or not isinstance(index, types.Integer):
            return None
        dtype = arr.dtype
        sig = dtype(arr, index, dtype)

        def codegen(context, builder, signature, args):
            ptr = _element_pointer(context, builder, arr, args[0], args[1])
            return builder.atomic_rmw(op, ptr, args[2], "monotonic")

        return sig, codegen

    typer.__name__ = f"atomic_{op}"
    typer.__doc__ = doc
    return intrinsic(typer)


atomic_add = _atomic_rmw("add", "Atomic ``arr.flat[index] += value``; returns the value before.")
atomic_or = _atomic_rmw("or", "Atomic ``arr.flat[index] |= value``; returns the word before.")


def _bitcast(name, src, dst, llvm_dst):
    @intrinsic
    def cast(typingctx, x):
        sig = dst(src)

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], llvm_dst)

        return sig, codegen

    cast.__name__ = cast.__qualname__ = name
    cast.__doc__ = f"Reinterpret the bits of a {src} as a {dst} (no conversion)."
    return cast


bits_to_f64 = _bitcast("bits_to_f64", types.uint64, types.float64, ir.DoubleType())
f64_to_bits = _bitcast("f64_to_bits", types.float64, types.uint64, ir.IntType(64))
bits_to_f32 = _bitcast("bits_to_f32", types.uint32, types.float32, ir.FloatType())
f32_to_bits = _bitcast("f32_to_bits", types.float32, types.uint32, ir.IntType(32))
