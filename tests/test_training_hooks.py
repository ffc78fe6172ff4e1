"""The trainer's seam to a family (`TrainingHooks`): MobileNetV3's hooks give the schedule and
subnets the trainer always had, a recipe names other families' dimensions in `choices`, and
supernet files, checkpoints and manifests name their family."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ofa_engine.families import family_of
from ofa_engine.families.mbv3.space import SearchSpace
from ofa_engine.families.mbv3.training_hooks import MobileNetV3Training
from ofa_engine.space.training import TrainingHooks
from ofa_engine.training.checkpoint import load_supernet_file, save_supernet
from ofa_engine.training.recipe import Phase, Recipe, check_recipe, default_recipe, training_hooks
from ofa_engine.training.sampling import phase_choices, sample_config

SPACE = SearchSpace.preset("tiny-fmnist")


def test_the_family_gives_its_hooks():
    hooks = family_of(SPACE).training()
    assert isinstance(hooks, MobileNetV3Training) and isinstance(hooks, TrainingHooks)
    assert hooks.elastic_dimensions() == {"kernel_sizes": (3, 5, 7), "expand_ratios": (3, 4, 6),
                                          "depths": (2, 3), "widths": (0, 1, 2)}
    assert isinstance(training_hooks("tiny-fmnist"), MobileNetV3Training)


def test_the_default_recipe_is_the_hooks_json_and_writes_no_choices_field():
    hooks = training_hooks(SPACE)
    recipe = default_recipe(SPACE)
    assert recipe == Recipe.from_dict(json.loads(json.dumps(hooks.default_recipe())))
    assert all("choices" not in p for p in recipe.to_dict()["phases"])
    assert [p.name for p in recipe.phases][:5] == ["full", "kernel", "depth", "expand-1", "expand-2"]


def test_phase_choices_fill_the_largest_value_and_name_bad_ones():
    hooks = training_hooks(SPACE)
    choices = hooks.phase_choices({"kernel_sizes": (3, 5)})
    assert choices == {"kernel_sizes": (3, 5), "expand_ratios": (6,), "depths": (3,), "widths": (2,)}
    with pytest.raises(ValueError, match=r"phase 'x': elastic dimension\(s\) \['embed_dim'\] not in family "
                                         r"'mbv3'; allowed: kernel_sizes, expand_ratios, depths, widths"):
        hooks.phase_choices({"embed_dim": (64,)}, "phase 'x'")
    with pytest.raises(ValueError, match=r"kernel_sizes = \[3, 9\] has \[9\], not in space 'tiny-fmnist'; "
                                         r"allowed: \[3, 5, 7\]"):
        hooks.phase_choices({"kernel_sizes": (3, 9)})


def test_sampling_goes_through_the_hooks_with_the_same_draws():
    phase = Phase("x", 1, 0.1, kernel_sizes=(3, 5, 7), depths=(2, 3), widths=(0, 1))
    choices = phase_choices(SPACE, phase)
    a = [sample_config(SPACE, choices, rng, 24) for rng in [np.random.default_rng(0)] for _ in range(5)]
    rng = np.random.default_rng(0)
    b = [training_hooks(SPACE).sample(choices, rng, 24) for _ in range(5)]
    assert a == b and all(SPACE.validate(c) == c for c in a)


def test_a_phase_names_other_families_dimensions_in_choices():
    phase = Phase("embed", 1, 0.1, choices={"embed_dim": [64, 96], "mlp_ratio": [1.5, 2.0]})
    assert phase.elastic_choices()["embed_dim"] == (64, 96)
    recipe = Recipe(phases=(phase,))
    again = Recipe.from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert again == recipe
    assert json.loads(json.dumps(again.to_dict()))["phases"][0]["choices"] == {"embed_dim": [64, 96],
                                                                              "mlp_ratio": [1.5, 2.0]}
    with pytest.raises(ValueError, match=r"\['kernel_sizes'\] given in choices"):
        Phase("x", 1, 0.1, kernel_sizes=(3,), choices={"kernel_sizes": [5]})
    with pytest.raises(ValueError, match=r"phase 'embed': elastic dimension\(s\) \['embed_dim', 'mlp_ratio'\] "
                                         r"not in family 'mbv3'"):
        check_recipe(SPACE, recipe)


def test_check_recipe_names_a_sort_the_family_does_not_have():
    for how in ("middle", "middle:1", "stage"):
        check_recipe(SPACE, Recipe(phases=(Phase("x", 1, 0.1, sort_channels=how),)))
    with pytest.raises(ValueError, match=r"phase 'x': sort_channels = 'embed'; allowed for family 'mbv3': "
                                         r"'middle:<expand stage>', 'stage'"):
        check_recipe(SPACE, Recipe(phases=(Phase("x", 1, 0.1, sort_channels="embed"),)))


def test_a_toy_familys_hooks_need_only_dimensions_sample_and_a_schedule():
    class Toy(TrainingHooks):
        family = "toy"

        def elastic_dimensions(self):
            return {"depth": (1, 2, 3)}

        def sample(self, choices, rng, image_size, smallest=False, largest=False):
            if smallest or largest:
                return {"depth": (min if smallest else max)(choices["depth"]), "image_size": image_size}
            return {"depth": int(rng.choice(choices["depth"])), "image_size": image_size}

        def default_recipe(self):
            return {"phases": [{"name": "full", "epochs": 1, "lr": 0.1, "distill": False},
                               {"name": "depth", "epochs": 1, "lr": 0.1, "choices": {"depth": [1, 2, 3]}}]}

    class ToySpace:
        name = "toy"

    hooks = Toy(ToySpace())
    recipe = Recipe.from_dict(hooks.default_recipe())
    choices = hooks.phase_choices(recipe.phases[1].elastic_choices())
    assert choices == {"depth": (1, 2, 3)}
    assert hooks.phase_choices(recipe.phases[0].elastic_choices()) == {"depth": (3,)}
    assert hooks.sample(choices, None, 28, smallest=True) == {"depth": 1, "image_size": 28}
    with pytest.raises(ValueError, match="allowed for family 'toy': null"):
        hooks.reorganize(None, "stage")


def test_supernet_files_name_their_family_and_old_ones_load_as_mbv3(tmp_path):
    torch.manual_seed(0)
    net = family_of(SPACE).build_supernet()
    path = save_supernet(net, tmp_path / "s.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["family"] == "mbv3"
    del payload["family"]               # a file written before families
    torch.save(payload, tmp_path / "old.pt")
    old = load_supernet_file(tmp_path / "old.pt")
    assert old.space == SPACE
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), net.state_dict().values()))
    payload["family"] = "densenet"
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"bad.pt: field 'family': family = 'densenet'; allowed: mbv3, vit, resnet, proxyless"):
        load_supernet_file(tmp_path / "bad.pt")


def test_a_manifest_family_must_be_registered():
    from ofa_engine.packages import load_package
    from ofa_engine.packages.manifest import PackageError, validate_manifest
    data = load_package("tiny-fmnist", weights=False).manifest.to_dict()
    assert validate_manifest(data, "m.json").family == "mbv3"
    with pytest.raises(PackageError, match=r"m.json: field 'family' = 'densenet'; allowed: a registered network "
                                           r"family: 'mbv3', 'vit', 'resnet', 'proxyless'"):
        validate_manifest({**data, "family": "densenet"}, "m.json")
