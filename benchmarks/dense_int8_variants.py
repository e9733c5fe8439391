"""Which int8 products cost the quality: ``onnx-int8`` with some weight products left in fp32.

Patches ``onnxruntime.quantization.quantize_dynamic`` (as ``spacerini.encoders_onnx._quantize``
calls it) to leave out, by ONNX node name, the products a variant names, builds that int8 model
into a cache of its own and prints the dense nDCG@10 on the two quality collections of
``dense_bench.py`` (1,000 man pages, 800 test queries; 1,200 standard-library functions, 200).

Variants:
* ``none``: every product quantized (the shipped model);
* ``last``: the last layer's four products in fp32; ``first_last``: the first and last layers';
* ``ffn1`` / ``ffn2``: every feed-forward intermediate / output product in fp32;
* ``attn``: every fused attention node (its QKV product) in fp32.

``--queries int8`` encodes the queries with the same int8 model, as before
``spacerini.encoders.query_runtime``; ``fp32`` (the shipped behaviour) encodes them with the fp32
model. fp32 throughout gives 0.7929 and 0.6363.

Usage: python benchmarks/dense_int8_variants.py VARIANT [--queries int8|fp32] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

VARIANTS = ("none", "last", "first_last", "ffn1", "ffn2", "attn")


def excluded(variant: str, names: list[str]) -> list[str]:
    """The ``MatMul``/``Attention`` node names ``variant`` leaves in fp32."""
    attention = [n for n in names if n.startswith("Attention")]
    if variant == "last":
        return attention[-1:] + [n for n in names if "layer.5" in n]
    if variant == "first_last":
        return attention[:1] + attention[-1:] + [n for n in names if "layer.5" in n or "layer.0" in n]
    if variant == "ffn1":
        return [n for n in names if n.endswith("/intermediate/dense/MatMul")]
    if variant == "ffn2":
        return [n for n in names if n.endswith("/output/dense/MatMul") and "/attention/" not in n]
    if variant == "attn":
        return attention
    return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variant", choices=VARIANTS)
    ap.add_argument("--queries", choices=("int8", "fp32"), default="fp32")
    ap.add_argument("--cache", default=None, help="cache folder for this variant's models (default: a new temporary one)")
    args = ap.parse_args()
    os.environ["SPACERINI_CACHE"] = args.cache or tempfile.mkdtemp(prefix=f"int8-{args.variant}-")
    sys.path.insert(0, str(Path(__file__).resolve().parent))

    import onnxruntime.quantization as quantization

    original = quantization.quantize_dynamic

    def patched(src: str, dst: str, **kw: object) -> None:
        import onnx

        names = [n.name for n in onnx.load(src).graph.node if n.op_type in ("MatMul", "Attention")]
        extra = excluded(args.variant, names)
        print("left in fp32:", extra, file=sys.stderr)
        kw["nodes_to_exclude"] = list(kw.get("nodes_to_exclude") or []) + extra  # type: ignore[call-overload]
        original(src, dst, **kw)

    quantization.quantize_dynamic = patched
    if args.queries == "int8":
        import spacerini.backends.dense as dense

        dense.query_runtime = lambda runtime: runtime

    import dense_bench
    import dense_collections

    out: dict[str, object] = {"variant": args.variant, "queries": args.queries}
    for name, collection, analyzer in (
        ("manpages", dense_collections.manpages(docs=1000), "en"),
        ("stdlib", dense_collections.stdlib_functions(docs=1200, queries=300, dev=100), "code"),
    ):
        result = dense_bench.bench_quality(collection, analyzer=analyzer, runtimes=["onnx-int8"], with_bm25=False)
        out[name] = result["ndcg@10_dense"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
