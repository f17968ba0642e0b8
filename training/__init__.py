"""Training, evaluation, export and the corpus tools (owns `datasets`, scikit-learn, skl2onnx)."""
