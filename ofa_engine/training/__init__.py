"""Training: progressive shrinking (`train.py` gathers the names; `loop.py` runs it from a
`recipe.py` recipe, with `sampling.py`, `loss.py`, `optim.py`, `distributed.py` and the run's
files in `checkpoint.py`), the bundled supernet (`bundled.py`) and the accuracy dataset
(`accuracy_dataset.py`)."""
