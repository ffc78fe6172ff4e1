"""Progressive-shrinking training, one import away: the names callers use, from their homes.

- `recipe.py`: `Phase`, `Recipe`, `default_recipe`, `twin_recipe`, `extends`, `check_recipe`,
  `training_hooks` (the family's `TrainingHooks`: `ofa_engine.space.training`)
- `checkpoint.py`: supernet files (`save_supernet`, `load_supernet_file`, `space_from_dict`),
  the resumable checkpoint and the epoch log
- `distributed.py`: torchrun / DDP; `loss.py`: `SubnetsLoss`; `sampling.py`: the subnets of
  a step; `optim.py`: augmentation, parameter groups, the LR schedule
- `loop.py`: `train()`
"""

from __future__ import annotations

from .checkpoint import CHECKPOINT_VERSION, load_supernet_file, save_supernet, space_from_dict, trim_log
from .distributed import DistributedEnv, init_distributed
from .loop import train
from .loss import SubnetsLoss
from .optim import augment, lr_at, param_groups
from .recipe import DISTILL_SOURCES, Phase, Recipe, check_recipe, default_recipe, extends, training_hooks, twin_recipe
from .sampling import phase_choices, sample_config, step_configs

__all__ = ["Phase", "Recipe", "default_recipe", "twin_recipe", "extends", "check_recipe", "training_hooks", "train",
           "save_supernet", "load_supernet_file", "space_from_dict", "trim_log", "CHECKPOINT_VERSION", "DISTILL_SOURCES",
           "DistributedEnv", "init_distributed", "SubnetsLoss", "augment", "lr_at", "param_groups",
           "phase_choices", "sample_config", "step_configs"]
