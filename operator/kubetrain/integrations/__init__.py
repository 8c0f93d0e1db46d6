"""Framework adapters that wire `kubetrain.runtime.Checkpointer` into training loops that own
their own loop: Hugging Face `Trainer` (`kubetrain.integrations.huggingface`) and PyTorch
Lightning (`kubetrain.integrations.lightning`). Each imports its framework only when used."""
