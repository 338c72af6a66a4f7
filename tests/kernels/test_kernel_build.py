"""Every Triton kernel builds for Hopper (sm_90) with the installed Triton, on this machine without a GPU.

The other kernel tests run the kernels in Triton's interpreter, which never lowers them to machine code: what only
the compiler refuses (a dot too small for the matrix units, a block too large for shared memory, a construct one
Triton release compiles and another does not) would first show on a GPU. ``bizoo bench kernel-build`` builds each
kernel the ops launch, PTX to cubin with the ptxas Triton ships, through a driver that launches nothing; here every
op's builds must all succeed and cover every kernel its Triton files launch. The last test plants the two failures
the interpreter lets through and checks that the driver reports both.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bizoo.kernels import dispatch
from bizoo.scripts.bench import kernel_build

KERNELS = Path(dispatch.__file__).parent


needs_ptxas = pytest.mark.skipif(
    not dispatch.triton_available() or not (kernel_build.triton_tools() / "ptxas").exists(),
    reason="needs Triton's kernels and the ptxas its wheel ships (Linux x86-64)",
)


def launched_kernels(op: str) -> set[str]:
    """The kernels ``kernels/<op>/triton_*.py`` launch (``name[grid](...)`` in their source)."""
    names = set()
    for path in (KERNELS / op).glob("triton_*.py"):
        names |= set(re.findall(r"\b(_\w+)\[[^\]]*\]\(", path.read_text()))
    return names


def test_launched_kernels_are_found_in_the_sources():
    assert launched_kernels("lion") == {"_scan_kernel", "_forward_kernel", "_backward_kernel", "_decay_grad_kernel",
                                        "_parallel_kernel"}
    assert launched_kernels("crf") == {"_forward_kernel", "_backward_kernel", "_viterbi_kernel",
                                       "_max_marginal_kernel"}
    assert len(launched_kernels("lstm")) >= 4 and len(launched_kernels("ssm")) == 2


@pytest.mark.parametrize("registers, threads", [(255, 256), (168, 384), (128, 512), (64, 1024), (32, 1024), (0, 1024)])
def test_threads_a_block_may_have_for_its_registers(registers, threads):
    assert kernel_build.max_threads(registers) == threads


def test_resource_usage_is_read_from_cuobjdump_output():
    text = (" Function _backward_kernel:\n"
            "  REG:255 STACK:296 SHARED:1024 LOCAL:0 CONSTANT[0]:848 TEXTURE:0 SURFACE:0 SAMPLER:0\n")
    assert kernel_build.resource_usage(text) == {"reg": 255, "stack": 296, "shared": 1024, "local": 0}


@needs_ptxas
@pytest.mark.parametrize("op", kernel_build.OPS)
def test_every_kernel_builds_for_hopper(op):
    rows, stderr = kernel_build.build(90, [op], all_configs=False)
    assert not stderr, stderr
    failed = [f"{row['kernel']} ({row['case']}): {row['status']}" for row in rows if row["status"] != "built"]
    assert not failed, "\n".join(failed)
    assert {row["kernel"] for row in rows} == launched_kernels(op)
    for row in rows:  # each cubin was read (Triton checked its shared memory against sm_90's before)
        assert row["reg"] > 0, row
    # fp32 cases build IEEE products, and TF32 ones where torch allows TF32 (the cases that say so)
    fp32 = [row for row in rows if "float32" in row["case"] and "PRECISION=" in row["constants"]]
    assert all(("PRECISION=tf32" in row["constants"]) == ("TF32 allowed" in row["case"]) for row in fp32), fp32
    if op in ("lion", "ssm"):
        assert any("TF32 allowed" in row["case"] for row in fp32)


@needs_ptxas
def test_the_command_prints_each_build_and_writes_json(tmp_path, capsys):
    from bizoo.scripts import bench

    path = tmp_path / "ssm.json"
    assert bench.main(["kernel-build", "--ops", "ssm", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "kernels built for sm_90 without a GPU" in out and "\nfailed: 0;" in out
    assert sum(line.startswith("ssm   _") for line in out.splitlines()) >= 2
    written = json.loads(path.read_text())
    assert written["arch"] == 90 and {row["kernel"] for row in written["rows"]} == launched_kernels("ssm")


PLANTED = textwrap.dedent("""
    import json
    import torch, triton, triton.language as tl
    from triton.runtime import driver
    from bizoo.scripts.bench.kernel_build import CompileOnlyDriver

    @triton.jit
    def product(X, Y, Z, M: tl.constexpr, K: tl.constexpr, N: tl.constexpr):  # Z = X Y of one (M, K) x (K, N) tile
        rm, rk, rn = tl.arange(0, M), tl.arange(0, K), tl.arange(0, N)
        a = tl.load(X + rm[:, None] * K + rk[None, :])  # (M, K)
        b = tl.load(Y + rk[:, None] * N + rn[None, :])  # (K, N)
        tl.store(Z + rm[:, None] * N + rn[None, :], tl.dot(a, b))

    rows = []
    driver.set_active(CompileOnlyDriver(90, rows))
    x = torch.randn(1024, 1024, dtype=torch.bfloat16)
    results = {}
    for name, shape in (("small tile", (64, 64, 64)), ("large tile", (64, 1024, 64))):
        try:
            product[(1,)](x, x, x, M=shape[0], K=shape[1], N=shape[2])
            results[name] = "built, reg=%s" % rows[-1].get("reg")
        except Exception as err:
            results[name] = type(err).__name__ + ": " + str(err).splitlines()[0]
    print(json.dumps(results))
""")


@needs_ptxas
def test_the_driver_reports_what_only_the_compiler_refuses(tmp_path):
    """A (64, 1024) x (1024, 64) bf16 tile runs in the interpreter, and needs 256 KB of shared memory on sm_90."""
    script = tmp_path / "planted.py"
    script.write_text(PLANTED)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["small tile"].startswith("built, reg=") and not results["small tile"].endswith("None")
    assert results["large tile"].startswith("OutOfResources") and "shared memory" in results["large tile"]


def test_rows_say_which_builds_a_gpu_refused_and_whether_the_op_went_on():
    """A build Triton refused to load (no resources read) is "refused" where the op ran a smaller block instead, and
    the case's failure where it did not; a failure without such a build is a row of its own."""
    def rows():
        return [{"kernel": "a", "reg": 40, "status": "built"}, {"kernel": "b", "status": "built"}]

    went_on = kernel_build.settle(rows(), "lion", "case", None)
    assert [(r["kernel"], r["status"], r["op"], r["case"]) for r in went_on] == [
        ("a", "built", "lion", "case"), ("b", "refused", "lion", "case")]
    ended = kernel_build.settle(rows(), "lion", "case", "RuntimeError: no block fits")
    assert [r["status"] for r in ended] == ["built", "failed: RuntimeError: no block fits"]
    other = kernel_build.settle(rows()[:1], "crf", "case", "PTXASError: x")
    assert [(r["kernel"], r["status"]) for r in other] == [("a", "built"), ("-", "failed: PTXASError: x")]


SMALL_GPU = textwrap.dedent("""
    import json, os, warnings
    import torch
    from triton.runtime import driver
    from bizoo.scripts.bench.kernel_build import CompileOnlyDriver

    rows = []
    driver.set_active(CompileOnlyDriver(89, rows))  # 99 KB of shared memory per block: L4, L40, RTX 4090
    from bizoo.kernels.lion import lion_attention
    from bizoo.kernels.ssm import bidirectional_ssm
    os.environ["TRITON_INTERPRET"] = "1"  # the ops' device check only: the kernels above are built, not interpreted

    def lion(dtype, chunk):
        q, k, v = (torch.randn(1, 2, 128, 64, dtype=dtype, requires_grad=True) for _ in range(3))
        y = lion_attention(q, k, v, -torch.rand(2), None, form="chunk", chunk_size=chunk, backend="triton")
        y.float().sum().backward()

    def ssm():
        u = torch.randn(1, 512, 256, requires_grad=True)
        k = torch.randn(512, requires_grad=True)
        y_f, y_b = bidirectional_ssm(u, u, k, k, torch.ones(()), torch.ones(()), backend="triton")
        (y_f.sum() + y_b.sum()).backward()

    results = {}
    # chunk 128 first: its backward falls back to 64, whose kernels a chunk-64 call before it would have built
    for name, run in (("lion bf16 chunk 128", lambda: lion(torch.bfloat16, 128)),
                      ("lion bf16 chunk 64", lambda: lion(torch.bfloat16, 64)),
                      ("lion fp32 chunk 64", lambda: lion(torch.float32, 64)), ("ssm fp32", ssm)):
        first = len(rows)
        try:
            with warnings.catch_warnings(record=True) as said:
                warnings.simplefilter("always")
                run()
            results[name] = "built"
        except Exception as err:
            results[name] = type(err).__name__ + ": " + str(err)
        results[name + " warnings"] = [str(w.message) for w in said if "lion_attention" in str(w.message)]
        results[name + " kernels"] = sorted({row["kernel"] + " " + " ".join(
            c for c in row["constants"].split() if c.startswith("C=")) for row in rows[first:]})
    print(json.dumps(results))
""")


@needs_ptxas
def test_blocks_too_large_for_a_gpu_say_what_to_change(tmp_path):
    """Built for sm_89 (99 KB of shared memory per block), LION's bf16 backward at chunk 128 (148 KB) and the SSM's
    first fp32 tile do not fit: LION's backward runs at chunk 64 (a warning says so), the SSM says what to change,
    instead of Triton's bare OutOfResources. (LION's fp32 backward at chunk 64 fits since its half-precision change:
    96 KB, was 112 KB.)"""
    script = tmp_path / "small_gpu.py"
    script.write_text(SMALL_GPU)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["BIZOO_TRITON_AUTOTUNE"] = "0"
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["lion bf16 chunk 64"] == "built" and results["lion fp32 chunk 64"] == "built"
    assert results["lion bf16 chunk 64 warnings"] == results["lion fp32 chunk 64 warnings"] == []
    assert results["lion bf16 chunk 128"] == "built"
    (warning,) = results["lion bf16 chunk 128 warnings"]
    assert warning.startswith("lion_attention: the Triton chunk schedule's backward at chunk_size=128 needs more "
                              "shared memory than this GPU gives one block") and warning.endswith(
        "runs at chunk 64 instead, the same math")
    # the forward at 128; the backward at 64, with the forward states scanned again at 64
    assert results["lion bf16 chunk 128 kernels"] == [
        "_backward_kernel C=128", "_backward_kernel C=64", "_forward_kernel C=128", "_scan_kernel C=128",
        "_scan_kernel C=64"]
    message = results["ssm fp32"]
    assert message.startswith("RuntimeError: bidirectional_ssm: ") and "BIZOO_TRITON_AUTOTUNE" in message
