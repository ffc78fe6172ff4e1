"""Few-shot latency fitting (predictors/latency/fewshot.py) and fit-profile --prior."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ofa_engine.cli.main import main
from ofa_engine.devices.latency_dataset import read_latency_dataset
from ofa_engine.devices.profiles import load_profile
from ofa_engine.families.mbv3.space import SearchSpace
from ofa_engine.predictors.latency import (BlockLinearModel, MacsLinearModel, architecture_features,
                                           fit_latency_model, latency_metrics, latency_model_from_dict)
from ofa_engine.predictors.latency.fewshot import (DEFAULT_FEWSHOT_METHOD, FEWSHOT_METHODS, MIN_FEWSHOT_SUBNETS,
                                                   fewshot_fit, fewshot_fit_rows, spread_indices)

SPACE = SearchSpace.preset("tiny-fmnist")
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "latency"


@pytest.fixture(scope="module")
def transfer():
    """Prior: block-linear fitted on the 1-thread dataset; target: the 2-thread dataset."""
    c1, y1, _ = read_latency_dataset(ASSETS / "cpu-1t.csv")
    c2, y2, _ = read_latency_dataset(ASSETS / "cpu-2t.csv")
    prior = fit_latency_model(SPACE, c1, y1, ridge=0.0)
    x, _ = architecture_features(SPACE, c2)
    perm = np.random.default_rng(1).permutation(len(y2))
    return prior, x, y2, perm[200:], perm[:200]


@pytest.mark.parametrize("k", [5, 10])
def test_few_shot_beats_from_scratch_at_small_k(transfer, k):
    prior, x, y, pool, test = transfer
    few, scratch = [], []
    for draw in range(5):
        idx = np.random.default_rng(draw).choice(pool, k, replace=False)
        few.append(latency_metrics(fewshot_fit_rows(prior, x[idx], y[idx]).predict(x[test]), y[test]))
        scratch.append(latency_metrics(fewshot_fit_rows(None, x[idx], y[idx], "scratch").predict(x[test]), y[test]))
    few_within = np.mean([q["within_10pct"] for q in few])
    scratch_within = np.mean([q["within_10pct"] for q in scratch])
    assert few_within > scratch_within + 0.15
    assert np.mean([q["mape"] for q in few]) < np.mean([q["mape"] for q in scratch])


@pytest.mark.parametrize("method", [m for m in FEWSHOT_METHODS])
def test_every_method_gives_a_plain_block_linear_model(transfer, method):
    prior, x, y, pool, _ = transfer
    idx = pool[:12]
    model = fewshot_fit_rows(None if method == "scratch" else prior, x[idx], y[idx], method)
    model.space = SPACE.name
    assert isinstance(model, BlockLinearModel)
    again = latency_model_from_dict(model.to_dict())
    np.testing.assert_allclose(again.predict(x[:20]), model.predict(x[:20]))


def test_a_uniformly_faster_device_is_recovered_exactly(transfer):
    prior, x, _, pool, test = transfer
    y = 0.6 * prior.predict(x) + 0.05   # synthetic device: 0.6x as slow, 50 us more per run
    idx = pool[:MIN_FEWSHOT_SUBNETS]
    for method in ("scale-offset", "group-scale", "ridge-prior"):
        predicted = fewshot_fit_rows(prior, x[idx], y[idx], method).predict(x[test])
        np.testing.assert_allclose(predicted, y[test], rtol=1e-6)
    scale = fewshot_fit_rows(prior, x[idx], y[idx], "scale").predict(x[test])
    assert np.max(np.abs(scale / y[test] - 1)) > 1e-3   # the offset is not a scale


def test_configs_entry_point_matches_rows():
    c, y, _ = read_latency_dataset(ASSETS / "cpu-2t.csv")
    prior = load_profile("cpu-ort-1t").latency_model
    model = fewshot_fit(SPACE, prior, c[:8], y[:8])
    x, _ = architecture_features(SPACE, c[:8])
    np.testing.assert_allclose(model.predict_ms(SPACE, c[:8]), fewshot_fit_rows(prior, x, y[:8]).predict(x))


def test_refusals(transfer):
    prior, x, y, _, _ = transfer
    with pytest.raises(ValueError, match="at least 5 measured subnets, got 4"):
        fewshot_fit_rows(prior, x[:4], y[:4])
    with pytest.raises(ValueError, match="few-shot method 'magic'; allowed"):
        fewshot_fit_rows(prior, x[:8], y[:8], "magic")
    with pytest.raises(ValueError, match="prior must be a 'block-linear'"):
        fewshot_fit_rows(MacsLinearModel(1.0, 0.1), x[:8], y[:8], DEFAULT_FEWSHOT_METHOD)
    bad = y[:8].copy()
    bad[3] = -1
    with pytest.raises(ValueError, match="finite and > 0"):
        fewshot_fit_rows(prior, x[:8], bad)


def test_spread_indices_cover_the_space_better_than_random(transfer):
    _, x, _, _, _ = transfer
    chosen = spread_indices(x, 10, first=(0, 1))
    assert list(chosen[:2]) == [0, 1] and len(set(chosen.tolist())) == 10
    np.testing.assert_array_equal(chosen, spread_indices(x, 10, first=(0, 1)))

    def min_gap(idx):
        z = np.log1p(x[idx])
        z = (z - np.log1p(x).mean(0)) / np.log1p(x).std(0)
        d = ((z[:, None] - z[None]) ** 2).sum(2)
        return d[np.triu_indices(len(idx), 1)].min()
    randoms = [min_gap(np.random.default_rng(s).choice(len(x), 10, replace=False)) for s in range(10)]
    assert min_gap(chosen) > max(randoms)
    with pytest.raises(ValueError, match="allowed: 1..400"):
        spread_indices(x, 401)


# ---------------------------------------------------------------------- fit-profile --prior
def _kit_csv(path: Path, rows: int) -> Path:
    with open(ASSETS / "cpu-2t.csv", newline="", encoding="utf-8") as fh:
        lines = list(csv.reader(fh))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\n").writerows(lines[:rows + 1])
    return path


def test_fit_profile_with_a_prior_from_eight_subnets(tmp_path, capsys):
    data = _kit_csv(tmp_path / "results.csv", 8)
    out = tmp_path / "vm.json"
    assert main(["fit-profile", str(data), "--space", "tiny-fmnist", "--name", "vm 2t", "--out", str(out),
                 "--prior", "cpu-ort-1t"]) == 0
    printed = json.loads(capsys.readouterr().out)
    profile = load_profile(out)
    assert profile.threads == 2 and printed["quality"]["n_test"] == 8
    assert profile.provenance["fit"] == DEFAULT_FEWSHOT_METHOD and profile.provenance["prior"] == "cpu-ort-1t"
    assert profile.provenance["subnets"] == 8 and "--prior cpu-ort-1t" in profile.provenance["command"]
    assert (tmp_path / "vm.validation.csv").is_file()
    spread = printed["spread"][0]
    assert spread["csv"] == "results.csv" and 0 < spread["median_relative_spread"] < 1


def test_latency_spread_flags_the_noisy_rows(tmp_path):
    from ofa_engine.devices.profile_kit import latency_spread
    path = tmp_path / "r.csv"
    rows = [("1.0", "0.95", "1.05")] * 5 + [("1.0", "0.6", "1.5")]
    path.write_text("median_ms,q1_ms,q3_ms\n" + "".join(",".join(r) + "\n" for r in rows))
    out = latency_spread(path)
    assert out["median_relative_spread"] == pytest.approx(0.1) and out["noisy_rows"] == [6]


def test_fit_profile_prior_refusals(tmp_path, capsys):
    small = _kit_csv(tmp_path / "small.csv", 4)
    eight = _kit_csv(tmp_path / "eight.csv", 8)
    base = ["fit-profile", "--space", "tiny-fmnist", "--name", "x", "--out", str(tmp_path / "x.json")]
    assert main([base[0], str(small), *base[1:], "--prior", "cpu-ort-1t"]) == 2
    assert "has 4 measured subnets; allowed: at least 5 with --prior" in capsys.readouterr().err
    assert main([base[0], str(eight), *base[1:], "--prior", "no-such-device"]) == 2
    assert "--prior: unknown profile 'no-such-device'" in capsys.readouterr().err
    assert main([base[0], str(eight), *base[1:], "--prior", "stm32f746"]) == 2
    assert "allowed: a profile with a learned (block-linear) model" in capsys.readouterr().err
    assert main([base[0], str(eight), *base[1:], "--method", "scale"]) == 2
    assert "--method 'scale' needs --prior" in capsys.readouterr().err
    assert main([base[0], str(eight), *base[1:]]) == 2   # from scratch: 20 at least
    assert "at least 20" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
