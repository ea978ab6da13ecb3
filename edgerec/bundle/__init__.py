"""The bundle: the contract between export/ and the runtime.

One schema (manifest), one reader, one writer, and the checks on the binary
files (hnswlib's index format, ONNX graphs) that run before any library reads
them. A bundle home (home) holds versions of a bundle behind a pointer.
"""
