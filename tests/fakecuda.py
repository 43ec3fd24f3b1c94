"""Fake CUDA on a CPU-only machine, to catch device mismatches without a GPU.

Every tensor really lives on the CPU, but a tensor created with device='cuda' (or moved there with
.to/.cuda, or derived by any op from such a tensor) is *tagged* "gpu" by its storage pointer, and
reports .device == cuda:0 / .is_cuda == True. A TorchDispatchMode sees every aten op and raises the
error CUDA would raise when a gpu-tagged tensor meets an untagged (CPU) tensor that is not a 0-dim
scalar (except ops where torch allows it: copies, CPU index tensors). A TorchFunctionMode rewrites
device='cuda' to 'cpu' (and tags the result), refuses .numpy()/__array__ of tagged tensors and
generator/device mismatches (CPU generator on a cuda op and vice versa), and fakes pin_memory.

Limitations: ops in C++ that create tensors with an explicit device (not through Python) are not
re-tagged; empty tensors have no storage pointer and are never classified; the 0-dim CPU scalar
exception is applied to every op (real CUDA refuses it for a few, e.g. cat/matmul); numerics are the
CPU's (no nondeterminism, TF32, OOM); Ray workers are not covered (use --executor local).

Use: ``python tests/fakecuda.py bench run ...`` runs bench under it (tests/test_fake_cuda.py), or
``import fakecuda; fakecuda.install()``. Written in the review of the GPU paths (2026-12-06) to
find device mismatches on a machine without a GPU; it changes torch process-wide, so it runs in a
process of its own.
"""

from __future__ import annotations

import os
import sys
import threading
import traceback
import weakref

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

CUDA = torch.device("cuda", 0)
_tagged: dict[int, int] = {}  # storage data_ptr -> live tagged tensor objects
_state = threading.local()
FINDINGS: list[str] = []
STATS = {"ops": 0, "gpu_ops": 0}
STRICT = os.environ.get("FAKECUDA_STRICT", "1") == "1"  # raise (as CUDA would) or only record
_seen: set = set()


def _storage(t):
    try:
        if t.numel() == 0 or t.is_sparse or t.is_nested or t.device.type == "meta":
            return None
        return t.untyped_storage()
    except Exception:
        return None


def _ptr(t):
    s = _storage(t)
    return id(s) if s is not None else 0


def tag(t):
    s = _storage(t)
    if s is not None and id(s) not in _tagged:
        _tagged[id(s)] = 1
        weakref.finalize(s, _tagged.pop, id(s), None)


def untag(t):
    s = _storage(t)
    if s is not None:
        _tagged.pop(id(s), None)


def is_gpu(t) -> bool:
    s = _storage(t)
    return s is not None and id(s) in _tagged


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository


def _where():
    stack = traceback.extract_stack()
    return [f for f in stack if f.filename.startswith(ROOT) and "/.venv/" not in f.filename]


def report(msg):
    frames = _where()
    loc = " <- ".join(f"{os.path.relpath(f.filename, ROOT)}:{f.lineno}" for f in reversed(frames[-4:]))
    key = (msg.split(":")[0], loc)
    line = f"FAKECUDA {msg} @ {loc}"
    if key not in _seen:
        _seen.add(key)
        FINDINGS.append(line)
        print(line, file=sys.stderr, flush=True)
    if STRICT:
        raise RuntimeError(msg + " [fakecuda]")


def _is_cuda_dev(d):
    if d is None:
        return False
    if isinstance(d, torch.device):
        return d.type == "cuda"
    if isinstance(d, str):
        return d.startswith("cuda")
    if isinstance(d, int):
        return True  # an ordinal means a cuda device
    return False


def _cpuize(d):
    return "cpu" if _is_cuda_dev(d) else d


class FakeGenerator(torch.Generator):
    def __new__(cls, device="cpu"):
        o = super().__new__(cls, "cpu")
        o._fake = torch.device(device) if not isinstance(device, torch.device) else device
        if o._fake.type == "cuda" and o._fake.index is None:
            o._fake = CUDA
        return o

    def __init__(self, device="cpu"):
        pass


def gen_device(g):
    return getattr(g, "_fake", g.device).type


_ALLOW_MIX = {
    "aten::copy_", "aten::_to_copy", "aten::lift_fresh", "aten::lift_fresh_copy", "aten::set_",
    "aten::_copy_from", "aten::_copy_from_and_resize", "aten::detach", "aten::alias", "aten::clone",
    "aten::_has_compatible_shallow_copy_type", "aten::_local_scalar_dense", "aten::is_pinned", "aten::_pin_memory",
}
_INDEX = {"aten::index.Tensor", "aten::index_put_", "aten::index_put", "aten::_index_put_impl_", "aten::_unsafe_index.Tensor"}


class DeviceCheck(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name
        full = f"{name}.{func._overloadname}" if func._overloadname != "default" else name
        flat, _ = tree_flatten((args, kwargs))
        tens = [t for t in flat if isinstance(t, torch.Tensor)]
        gpu = [t for t in tens if is_gpu(t)]
        STATS["ops"] += 1
        STATS["gpu_ops"] += bool(gpu)
        if gpu and name not in _ALLOW_MIX and not getattr(_state, "explicit", False):
            if name in _INDEX or full in _INDEX:
                self_t = args[0]
                check = [self_t] + ([args[2]] if name.startswith("aten::index_put") or name == "aten::_index_put_impl_" else [])
                bad = [t for t in check if isinstance(t, torch.Tensor) and not is_gpu(t) and t.dim() > 0 and t.numel() > 0]
                if is_gpu(self_t) and bad:
                    report(f"Expected all tensors to be on the same device ({full}: values on cpu, self on cuda:0)")
                if not is_gpu(self_t) and self_t.numel() > 0:
                    report(f"indices should be either on cpu or on the same device as the indexed tensor (cpu) ({full})")
            else:
                cpu = [t for t in tens if not is_gpu(t) and t.numel() > 0 and t.dim() > 0]
                if cpu:
                    report(f"Expected all tensors to be on the same device, but found at least two devices, cuda:0 and "
                           f"cpu! ({full}; cpu shapes {[tuple(t.shape) for t in cpu][:3]})")
        out = func(*args, **kwargs)
        if (not tens and kwargs.get("device") is not None and not getattr(_state, "explicit", False)
                and getattr(_state, "ctx_gpu", False)):
            # a factory op made in C++ from a tensor's options (one_hot's zeros) inside a call on gpu tensors
            tree_map(lambda o: tag(o) if isinstance(o, torch.Tensor) else None, out)
            return out
        if name == "aten::_to_copy" and "device" in kwargs:
            return out  # decided by the function mode
        if name == "aten::copy_":
            return out  # stays where self is
        if gpu and not getattr(_state, "explicit", False):
            tree_map(lambda o: tag(o) if isinstance(o, torch.Tensor) and not is_gpu(o) else None, out)
        return out


def _prop_name(func):
    s = getattr(func, "__self__", None)
    return getattr(s, "__name__", None) if getattr(func, "__name__", "") == "__get__" else None


_FACTORIES_LIKE_INPUT = {"as_tensor", "tensor", "asarray"}


class FakeCuda(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        prop = _prop_name(func)
        if prop is not None:
            t = args[0]
            if prop == "device" and isinstance(t, torch.Tensor) and is_gpu(t):
                return CUDA
            if prop == "is_cuda" and isinstance(t, torch.Tensor):
                return is_gpu(t)
            return func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if name in ("numpy", "__array__") and args and isinstance(args[0], torch.Tensor) and is_gpu(args[0]):
            report("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to host memory first.")
        if name == "pin_memory" and args and isinstance(args[0], torch.Tensor):
            if is_gpu(args[0]):
                report("cannot pin 'torch.cuda.FloatTensor' only dense CPU tensors can be pinned")
            _state.explicit = True
            try:
                return args[0].clone()
            finally:
                _state.explicit = False
        if name == "is_pinned":
            return False
        if name in ("to", "cuda", "cpu") and args and isinstance(args[0], torch.Tensor):
            return self._to(func, name, args, kwargs)
        if name == "type" and len(args) > 1 and isinstance(args[1], str) and "cuda" in args[1]:
            report("Tensor.type('torch.cuda...') used")
        # device kwarg / generator
        target = None
        explicit = False
        if "device" in kwargs and kwargs["device"] is not None:
            explicit = True
            target = "cuda" if _is_cuda_dev(kwargs["device"]) else "cpu"
            kwargs["device"] = _cpuize(kwargs["device"])
        g = kwargs.get("generator")
        if isinstance(g, torch.Generator):
            flat, _ = tree_flatten(args)
            tens = [t for t in flat if isinstance(t, torch.Tensor)]
            op_dev = target or ("cuda" if tens and is_gpu(tens[0]) else "cpu")
            if gen_device(g) != op_dev:
                report(f"Expected a '{op_dev}' device type for generator but found '{gen_device(g)}' ({name})")
        if not explicit:
            flat, _ = tree_flatten((args, kwargs))
            prev = getattr(_state, "ctx_gpu", False)
            _state.ctx_gpu = any(isinstance(t, torch.Tensor) and is_gpu(t) for t in flat)
            try:
                return func(*args, **kwargs)
            finally:
                _state.ctx_gpu = prev
        _state.explicit = True
        try:
            out = func(*args, **kwargs)
            flat_in, _ = tree_flatten(args)
            in_ptrs = {_ptr(t) for t in flat_in if isinstance(t, torch.Tensor)}

            def fix(o):
                if not isinstance(o, torch.Tensor):
                    return o
                if target == "cuda":
                    if is_gpu(o):
                        return o
                    if _ptr(o) in in_ptrs or _ptr(o) == 0:
                        o = o.clone() if _ptr(o) else o
                    tag(o)
                    return o
                if is_gpu(o):
                    o = o.clone()
                    untag(o)
                return o

            return tree_map(fix, out)
        finally:
            _state.explicit = False

    def _to(self, func, name, args, kwargs):
        t = args[0]
        dev = kwargs.get("device")
        rest = list(args[1:])
        for i, a in enumerate(rest):
            if isinstance(a, (str, torch.device)) and not (isinstance(a, str) and a.startswith("torch.")):
                try:
                    torch.device(a)
                    dev = a
                    rest[i] = _cpuize(a)
                except Exception:
                    pass
            elif isinstance(a, torch.Tensor):  # .to(other)
                dev = "cuda" if is_gpu(a) else "cpu"
                rest[i] = a.dtype
        if name == "cuda":
            dev = "cuda"
            rest = []
            kwargs = {k: v for k, v in kwargs.items() if k in ("non_blocking", "memory_format")}
            func = torch.Tensor.to
        if name == "cpu":
            dev = "cpu"
            func = torch.Tensor.to
            rest = ["cpu"]
        if "device" in kwargs:
            kwargs["device"] = _cpuize(kwargs["device"])
        if dev is None:
            return func(t, *rest, **kwargs)
        to_gpu = _is_cuda_dev(dev)
        _state.explicit = True
        try:
            out = func(t, *rest, **kwargs)
            if to_gpu:
                if is_gpu(out):
                    return out
                if out is t or _ptr(out) == _ptr(t):
                    out = out.clone() if not isinstance(out, torch.nn.Parameter) else out.detach().clone().requires_grad_(t.requires_grad)
                tag(out)
                return out
            if is_gpu(out):
                out = out.clone()
                untag(out)
            return out
        finally:
            _state.explicit = False


class _Props:
    total_memory = int(os.environ.get("FAKECUDA_MEM", 80 * 2**30))
    name = "FakeCUDA"
    major, minor = 9, 0
    multi_processor_count = 132


def install():
    torch.Generator = FakeGenerator
    c = torch.cuda
    c.is_available = lambda: True
    c.device_count = lambda: 1
    c.is_initialized = lambda: True
    c.current_device = lambda: 0
    for n in ("synchronize", "empty_cache", "reset_peak_memory_stats", "reset_max_memory_allocated", "manual_seed",
              "manual_seed_all", "set_device", "init", "ipc_collect"):
        setattr(c, n, lambda *a, **k: None)
    for n in ("max_memory_allocated", "max_memory_reserved", "memory_allocated", "memory_reserved"):
        setattr(c, n, lambda *a, **k: 0)
    c.get_device_properties = lambda *a, **k: _Props()
    c.get_device_name = lambda *a, **k: "FakeCUDA"
    c.mem_get_info = lambda *a, **k: (70 * 2**30, 80 * 2**30)
    c.get_device_capability = lambda *a, **k: (9, 0)
    torch.optim.Optimizer._accelerator_graph_capture_health_check = lambda self: None
    DeviceCheck().__enter__()
    FakeCuda().__enter__()


if __name__ == "__main__":  # python tests/fakecuda.py bench run ...: the bench CLI under the stand-in
    install()
    from bench.cli import entry

    sys.argv = sys.argv[1:]
    entry()
    import runpy
    if sys.argv[1] == "-m":
        mod = sys.argv[2]
        sys.argv = [mod] + sys.argv[3:]
        runpy.run_module(mod, run_name="__main__", alter_sys=True)
    else:
        path = sys.argv[1]
        sys.argv = sys.argv[1:]
        runpy.run_path(path, run_name="__main__")
