"""The exported edge's folder: the manifest's format version and the files it holds (written by
:mod:`eccentric_det.deploy.export`, read by :class:`~eccentric_det.edge.ExportedEdge`)."""
FORMAT = 1
MANIFEST, ONNX, TORCHSCRIPT, TABLES, H_S = "edge.json", "edge.onnx", "edge.ts", "coder.pt", "h_s.ts"
GAINS = "log_gain"  # in coder.pt: a variable-rate codec's log-gains [levels, channels]
BACKENDS = ("onnx", "torchscript")
