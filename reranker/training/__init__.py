"""Training: teacher fine-tuning, teacher labeling, graph building, student distillation."""
