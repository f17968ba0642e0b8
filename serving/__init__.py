"""HTTP service: FastAPI app, settings, auth, onnxruntime sessions."""
