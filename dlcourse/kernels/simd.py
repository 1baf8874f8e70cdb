"""Eight float32 values as one machine register, for kernels that keep a tile of results in registers: a vector type for
Numba and eight operations on it, each a few LLVM instructions (load, broadcast, store, multiply-add, add, zero, one
value, the sum of all eight).

Why. Numba vectorises a loop over an array, but it keeps a tile of running sums (six outputs times sixteen filters, say)
in memory, not in registers: every multiply-add then waits for a load and a store, and such kernels ran at 15-30 GFLOP/s
on a 2-core AVX2 machine, a sixth of its peak. With the sums held in `Vec8` values, LLVM keeps them in registers across
the loop (twelve of the sixteen AVX2 registers for a 6x16 tile) and each step is one broadcast, two loads and twelve
fused multiply-adds, as in a hand-written matrix-product kernel: `conv.conv_nhwc_forward` and
`conv.conv_nhwc_weight_grad` reach 110-180 GFLOP/s on that machine (lesson 08b).

The operations take a flat, C-contiguous float32 array and an index: `vload(a, i)` = a[i:i+8], `vbroadcast(a, i)` =
eight copies of a[i], `vstore(a, i, v)` writes a[i:i+8]. `vfma(a, b, c)` = a*b + c (fused where the CPU has FMA:
`llvm.fmuladd`), `vadd`, `vzero`, `vget(v, j)` = v[j] and `vsum(v)`, the sum of its values. Compiled, they check no
bounds (as Numba's own indexing does not), except under NUMBA_BOUNDSCHECK=1, where an index outside the array raises
IndexError. Without the compiler (NUMBA_DISABLE_JIT=1) each is the NumPy expression above, on arrays of eight float32
values, so the kernels still run as plain Python; there they always check their index and raise IndexError, where a
slice would quietly come out short. LLVM maps the type to one AVX register (two SSE registers on a CPU without AVX)."""
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model

WIDTH = 8       # float32 values per vector


class Vec8Type(types.Type):
    "Numba's type of eight float32 values in one register"
    def __init__(self): super().__init__(name='Vec8f32')


vec8 = Vec8Type()
_V = ir.VectorType(ir.FloatType(), WIDTH)


@register_model(Vec8Type)
class _Vec8Model(models.PrimitiveModel):
    def __init__(self, dmm, fe_type): super().__init__(dmm, fe_type, _V)


def _flat_f32(a):  # a Numba type
    return isinstance(a, types.Array) and a.ndim == 1 and a.layout == 'C' and a.dtype == types.float32


def _address(context, builder, arrty, arr, i):
    "Pointer to element i of a flat C-contiguous array, as a pointer to a vector"
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.bitcast(builder.gep(data, [i]), _V.as_pointer())


@intrinsic
def _load(typingctx, a, i):
    if not (_flat_f32(a) and isinstance(i, types.Integer)): return None
    def codegen(context, builder, sig, args):
        return builder.load(_address(context, builder, sig.args[0], args[0], args[1]), align=4)
    return vec8(a, i), codegen


@intrinsic
def _broadcast(typingctx, a, i):
    if not (_flat_f32(a) and isinstance(i, types.Integer)): return None
    def codegen(context, builder, sig, args):
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        s = builder.load(builder.gep(data, [args[1]]), align=4)
        v = builder.insert_element(ir.Constant(_V, ir.Undefined), s, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(v, ir.Constant(_V, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), WIDTH),
                                                                                     [0] * WIDTH))
    return vec8(a, i), codegen


@intrinsic
def _store(typingctx, a, i, v):
    if not (_flat_f32(a) and isinstance(i, types.Integer) and v == vec8): return None
    def codegen(context, builder, sig, args):
        builder.store(args[2], _address(context, builder, sig.args[0], args[0], args[1]), align=4)
        return context.get_dummy_value()
    return types.none(a, i, vec8), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    if not a == b == c == vec8: return None
    def codegen(context, builder, sig, args):
        f = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V, [_V, _V, _V]), 'llvm.fmuladd.v8f32')
        return builder.call(f, args)
    return vec8(vec8, vec8, vec8), codegen


@intrinsic
def _add(typingctx, a, b):
    if not a == b == vec8: return None
    def codegen(context, builder, sig, args): return builder.fadd(args[0], args[1])
    return vec8(vec8, vec8), codegen


@intrinsic
def _sum(typingctx, v):
    if not v == vec8: return None
    def codegen(context, builder, sig, args):                # halves added three times: a tree of seven additions
        v, i32 = args[0], ir.IntType(32)
        for width in (4, 2, 1):
            upper = builder.shuffle_vector(v, ir.Constant(_V, ir.Undefined),
                                           ir.Constant(ir.VectorType(i32, WIDTH), [width + j if j < width else 0
                                                                                   for j in range(WIDTH)]))
            v = builder.fadd(v, upper)
        return builder.extract_element(v, ir.Constant(i32, 0))
    return types.float32(vec8), codegen


@intrinsic
def _zero(typingctx):
    def codegen(context, builder, sig, args): return ir.Constant(_V, [0.0] * WIDTH)
    return vec8(), codegen


@intrinsic
def _get(typingctx, v, j):
    if not (v == vec8 and isinstance(j, types.Integer)): return None
    def codegen(context, builder, sig, args): return builder.extract_element(args[0], args[1])
    return types.float32(vec8, j), codegen


# The operations as Python (NUMBA_DISABLE_JIT=1, or a call from Python); compiled code uses the overloads below

def _in_bounds(a, i, n, what):
    "IndexError unless a[i:i+n] lies inside the flat array `a` (as the checked overloads: a slice would quietly shorten)"
    if i < 0 or i + n > a.size: raise IndexError(f'{what}: index out of bounds')

def vload(a, i):   # flat float32 array, index
    "a[i:i+8] as a vector"
    _in_bounds(a, i, WIDTH, 'vload')
    return a[i:i + WIDTH].copy()

def vbroadcast(a, i):
    "Eight copies of a[i]"
    _in_bounds(a, i, 1, 'vbroadcast')
    return np.full(WIDTH, a[i], np.float32)

def vstore(a, i, v):
    "a[i:i+8] = v"
    _in_bounds(a, i, WIDTH, 'vstore')
    a[i:i + WIDTH] = v

def vfma(a, b, c):
    "a*b + c, elementwise (one rounding where the CPU fuses it)"
    return a * b + c

def vadd(a, b):
    "a + b, elementwise"
    return a + b

def vsum(v):
    "The sum of v's eight values (as a tree: pairs of halves added)"
    v = v[:4] + v[4:]
    v = v[:2] + v[2:]
    return v[0] + v[1]

def vzero():
    "Eight zeros"
    return np.zeros(WIDTH, np.float32)

def vget(v, j):
    "Element j of v"
    _in_bounds(v, j, 1, 'vget: element')
    return v[j]


def _checked():
    "Check indices in the compiled operations? As Numba's indexing does: under NUMBA_BOUNDSCHECK=1"
    return bool(numba.config.BOUNDSCHECK)


@overload(vload, inline='always')
def _ol_vload(a, i):
    if _checked():
        def impl(a, i):
            if i < 0 or i + 8 > a.size: raise IndexError('vload: index out of bounds')
            return _load(a, i)
        return impl
    return lambda a, i: _load(a, i)


@overload(vbroadcast, inline='always')
def _ol_vbroadcast(a, i):
    if _checked():
        def impl(a, i):
            if i < 0 or i >= a.size: raise IndexError('vbroadcast: index out of bounds')
            return _broadcast(a, i)
        return impl
    return lambda a, i: _broadcast(a, i)


@overload(vstore, inline='always')
def _ol_vstore(a, i, v):
    if _checked():
        def impl(a, i, v):
            if i < 0 or i + 8 > a.size: raise IndexError('vstore: index out of bounds')
            _store(a, i, v)
        return impl
    return lambda a, i, v: _store(a, i, v)


@overload(vfma, inline='always')
def _ol_vfma(a, b, c): return lambda a, b, c: _fma(a, b, c)


@overload(vadd, inline='always')
def _ol_vadd(a, b): return lambda a, b: _add(a, b)


@overload(vsum, inline='always')
def _ol_vsum(v): return lambda v: _sum(v)


@overload(vzero, inline='always')
def _ol_vzero(): return lambda: _zero()


@overload(vget, inline='always')
def _ol_vget(v, j):
    if _checked():
        def impl(v, j):
            if j < 0 or j >= 8: raise IndexError('vget: element out of bounds')
            return _get(v, j)
        return impl
    return lambda v, j: _get(v, j)
