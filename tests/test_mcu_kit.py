"""The microcontroller profile kit: int8 files that fit the device, the results template, and
fit-profile on the filled template (synthetic latencies; no board here)."""

import csv
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from ofa_engine import SearchSpace, analyze
from ofa_engine.cli import main
from ofa_engine.devices.mcu import MCU_PARTS
from ofa_engine.devices.mcu_kit import (DEFAULT_MCU_KIT_SUBNETS, MCU_KIT_FORMAT, TEMPLATE_COLUMNS,
                                        int8_file_bytes_bound, is_mcu_results, mcu_kit_configs, mcu_kit_zip_bytes,
                                        read_mcu_results)
from ofa_engine.devices.profile_kit import MIN_ROWS, fit_profile_from_csv, write_profile_kit
from ofa_engine.devices.profiles import load_profile, load_validation
from ofa_engine.predictors.latency import architecture_features
from ofa_engine.runtime.ort import make_session

SPACE = SearchSpace.preset("tiny-fmnist")
DEVICE = "stm32f746"
N_KIT = 3
SIZES = (20, 24)   # two small resolutions keep the int8 exports quick


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """A 3-file MCU kit written by the CLI, as a user would."""
    out = tmp_path_factory.mktemp("mcu") / "kit"
    assert main(["profile-kit", "--space", "tiny-fmnist", "--mcu", DEVICE, "--n", str(N_KIT),
                 "--image-sizes", "20,24", "--out", str(out)]) == 0
    return out


def test_kit_holds_int8_static_files_that_fit_the_flash(kit):
    manifest = json.loads((kit / "manifest.json").read_text())
    files = [f"m{i:03d}.onnx" for i in range(N_KIT)]
    assert sorted(p.name for p in kit.iterdir()) == sorted(files + ["manifest.json", "results.csv", "README.md"])
    assert manifest["format"] == MCU_KIT_FORMAT and manifest["device"]["name"] == DEVICE
    assert manifest["device"]["flash_kb"] == MCU_PARTS[DEVICE].flash_kb and manifest["precision"] == "int8"
    configs = [SPACE.validate(m["config"]) for m in manifest["models"]]
    bound = int8_file_bytes_bound(SPACE, configs)
    for model, cfg, upper in zip(manifest["models"], configs, bound):
        path = kit / model["file"]
        size = path.stat().st_size
        assert size == model["onnx_file_bytes"] <= upper <= MCU_PARTS[DEVICE].flash_kb * 1024
        proto = onnx.load(path)
        onnx.checker.check_model(proto, full_check=True)
        assert [o.domain for o in proto.opset_import] == [""]   # only the standard operators
        (inp,), (out,) = proto.graph.input, proto.graph.output
        assert (inp.name, out.name) == ("input", "logits")
        assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 1, cfg.image_size, cfg.image_size]
        assert [d.dim_value for d in out.type.tensor_type.shape.dim] == [1, SPACE.num_classes]
        # every shape inside is static once inferred (what a toolchain's importer needs)
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True).graph.value_info
        assert inferred and all(d.HasField("dim_value") for v in inferred for d in v.type.tensor_type.shape.dim)
        # QDQ int8: conv / gemm weights stored as int8, activations quantized to int8
        inits = {i.name: numpy_helper.to_array(i) for i in proto.graph.initializer}
        ops = [n.op_type for n in proto.graph.node]
        assert ops.count("Conv") >= 3 and "Gemm" in ops
        weights = [inits[n.input[0]] for n in proto.graph.node if n.op_type == "DequantizeLinear"
                   and n.input[0] in inits]
        assert weights and {w.dtype for w in weights} <= {np.dtype(np.int8), np.dtype(np.int32)}
        quantize = [n for n in proto.graph.node if n.op_type == "QuantizeLinear"]
        assert quantize and all(inits[n.input[2]].dtype == np.int8 for n in quantize)
        session = make_session(str(path), threads=1)
        (logits,) = session.run(None, {"input": np.zeros((1, 1, cfg.image_size, cfg.image_size), np.float32)})
        assert logits.shape == (1, SPACE.num_classes)
    np.testing.assert_array_equal([m["macs"] for m in manifest["models"]], analyze(SPACE, configs)["macs"])


def test_template_and_readme(kit):
    rows = list(csv.DictReader(io.StringIO((kit / "results.csv").read_text())))
    assert tuple(rows[0]) == TEMPLATE_COLUMNS
    assert [r["file"] for r in rows] == [f"m{i:03d}.onnx" for i in range(N_KIT)]
    assert {r["device"] for r in rows} == {DEVICE} and all(r["latency_ms"] == "" for r in rows)
    assert is_mcu_results(kit / "results.csv")
    readme = (kit / "README.md").read_text()
    for words in ("X-CUBE-AI", "Validate on target", "DWT->CYCCNT", "ai_network_run", "median", "onnx2tf",
                  "fit-profile results.csv", "Device profiles page", "m002.onnx"):
        assert words in readme
    with pytest.raises(ValueError, match=r"row 1 \(m000.onnx\), column 'latency_ms' is empty; allowed: the "
                                         r"latency measured on the board"):
        read_mcu_results(kit / "results.csv", SPACE, min_rows=1)


def _fill(src: Path, dst: Path, edit=None) -> Path:
    rows = list(csv.DictReader(io.StringIO(src.read_text())))
    for i, row in enumerate(rows):
        row["latency_ms"] = f"{1.5 + i:.3f}"
    if edit is not None:
        edit(rows)
    with open(dst, "w", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return dst


def test_the_kit_manifest_checks_every_row(kit):
    results = read_mcu_results(_fill(kit / "results.csv", kit / "filled.csv"), SPACE, min_rows=N_KIT)
    assert results.device == DEVICE and results.files == ["m000.onnx", "m001.onnx", "m002.onnx"]
    np.testing.assert_allclose(results.latency_ms, [1.5, 2.5, 3.5])
    assert np.isnan(results.measured_ram_kb).all()

    def rename(rows):
        rows[1]["file"] = "m999.onnx"

    def swap_config(rows):
        rows[0]["config"], rows[0]["macs"] = rows[2]["config"], rows[2]["macs"]

    def other_device(rows):
        for row in rows:
            row["device"] = "stm32h743"

    for edit, message in ((rename, r"row 2 \(m999.onnx\): file 'm999.onnx' is not in this kit"),
                          (swap_config, r"row 1 \(m000.onnx\), column 'config' is not the config of m000.onnx"),
                          (other_device, r"column 'device' = 'stm32h743', but the kit was written for 'stm32f746'")):
        with pytest.raises(ValueError, match=message):
            read_mcu_results(_fill(kit / "results.csv", kit / "bad.csv", edit), SPACE, min_rows=N_KIT)
    # fit-profile refuses a CPU runner's results.csv put into the MCU kit's folder
    cpu = kit / "cpu.csv"
    cpu.write_text("file,config,median_ms,q1_ms,q3_ms,runs,threads,batch_size\n")
    with pytest.raises(ValueError, match="is in a microcontroller kit's folder but is not its filled results.csv"):
        fit_profile_from_csv(cpu, "x")
    for path in (kit / "filled.csv", kit / "bad.csv", cpu):
        path.unlink()


def test_an_mcu_template_beside_a_cpu_kit_is_refused(kit, tmp_path):
    cpu_kit = write_profile_kit(SPACE, tmp_path / "cpu", n=2, image_sizes=(20,))
    filled = _fill(kit / "results.csv", cpu_kit / "results.csv")
    with pytest.raises(ValueError, match=r"is not an MCU kit's \(format 'ofa-engine/profile-kit'"):
        read_mcu_results(filled, SPACE, min_rows=N_KIT)


def test_zip_of_the_kit():
    seen = []
    data = mcu_kit_zip_bytes(SPACE, "stm32f412", n=2, image_sizes=(20,), calibration_images=2,
                             progress=lambda *args: seen.append(args))
    assert seen == [(1, 2, "exported m000.onnx"), (2, 2, "exported m001.onnx")]
    names = sorted(zipfile.ZipFile(io.BytesIO(data)).namelist())
    assert names == [f"ofa-mcu-kit-stm32f412/{n}" for n in
                     ("README.md", "m000.onnx", "m001.onnx", "manifest.json", "results.csv")]


@pytest.mark.parametrize("device", sorted(MCU_PARTS))
def test_configs_fit_the_device_and_span_its_range(device):
    part = MCU_PARTS[device]
    configs = mcu_kit_configs(SPACE, device, DEFAULT_MCU_KIT_SUBNETS, seed=0)
    assert configs == mcu_kit_configs(SPACE, device, DEFAULT_MCU_KIT_SUBNETS, seed=0)
    assert len(set(configs)) == DEFAULT_MCU_KIT_SUBNETS
    metrics = analyze(SPACE, configs)
    assert (int8_file_bytes_bound(SPACE, configs) <= part.flash_kb * 1024).all()
    assert (metrics["peak_activation_bytes"] <= part.sram_kb * 1024).all()
    # the fewest and the most MACs that fit come first; the rest lie between
    assert metrics["macs"][0] == metrics["macs"].min() and metrics["macs"][1] == metrics["macs"].max()
    assert metrics["macs"][0] == analyze(SPACE, SPACE.smallest())["macs"]


def test_a_space_that_cannot_fit_is_refused_and_non_mcu_profiles_too():
    with pytest.raises(ValueError, match=r"no subnet of space 'ofa-mbv3-w1.0' fits stm32f746 as an int8 file: "
                                         r"the smallest .* needs up to [\d,]+ KB of Flash \(limit 1024 KB\)"):
        mcu_kit_configs(SearchSpace.preset("ofa-mbv3-w1.0"), DEVICE, 5)
    with pytest.raises(ValueError, match=r"--mcu 'cpu-ort-1t' has memory .*; allowed: a microcontroller profile"):
        mcu_kit_configs(SPACE, "cpu-ort-1t", 5)


def test_the_file_bound_is_the_export_estimate_per_subnet():
    """`int8_file_bytes_bound` counts from the layer walk what `estimate_overhead_bytes` counts
    on the built network (the bound `specialize` keeps int8 files within Flash by)."""
    from ofa_engine.runtime.export import untrained_supernet
    from ofa_engine.runtime.quantize import estimate_overhead_bytes
    supernet = untrained_supernet(SPACE)
    configs = [SPACE.smallest(), SPACE.largest()] + [SPACE.sample(np.random.default_rng(s)) for s in range(6)]
    expected = [analyze(SPACE, c)["flash_bytes"] + estimate_overhead_bytes(supernet.extract(c)) for c in configs]
    np.testing.assert_array_equal(int8_file_bytes_bound(SPACE, configs), expected)


# ---------------------------------------------------------------------- fitting the filled template
TRUE_SEED = 7


def _template(path: Path, configs, latency_ms, device=DEVICE, ram_kb=None, flash_kb=None) -> Path:
    """A filled template as the app receives it: no manifest.json beside it."""
    macs = analyze(SPACE, configs)["macs"]
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(TEMPLATE_COLUMNS)
        for i, (cfg, ms) in enumerate(zip(configs, latency_ms)):
            writer.writerow([f"m{i:03d}.onnx", device, cfg.to_json(), int(macs[i]), "", "", f"{ms:.6f}",
                             "" if ram_kb is None else ram_kb[i], "" if flash_kb is None else flash_kb[i]])
    return path


def _synthetic_board(configs):
    """Latencies that are a known linear function of the model's features, with 2% seeded noise."""
    x, _ = architecture_features(SPACE, configs)
    weights = np.random.default_rng(TRUE_SEED).uniform(0.5, 1.5, x.shape[1]) * 1e-5
    truth = 2.0 + x @ weights
    return truth, truth * np.exp(np.random.default_rng(TRUE_SEED + 1).normal(0, 0.02, len(configs)))


def test_filled_template_round_trips_through_fit_profile(tmp_path, capsys):
    configs = mcu_kit_configs(SPACE, DEVICE, DEFAULT_MCU_KIT_SUBNETS)
    truth, measured = _synthetic_board(configs)
    peak = analyze(SPACE, configs)["peak_activation_bytes"] / 1024
    filled = _template(tmp_path / "results.csv", configs, measured, ram_kb=[f"{1.25 * p:.2f}" for p in peak])
    out = tmp_path / "board.json"
    assert main(["fit-profile", str(filled), "--space", "tiny-fmnist", "--name", "my f746", "--out", str(out)]) == 0, \
        capsys.readouterr().err
    printed = json.loads(capsys.readouterr().out)
    assert printed["name"] == "my-f746" and printed["threads"] == 1
    profile = load_profile(str(out))
    assert profile.kind == "measured" and profile.precision == "int8" and not profile.measures_locally
    assert dict(profile.memory) == {"sram_kb": 320, "flash_kb": 1024}
    assert profile.runtime["clock_mhz"] == 216.0 and profile.provenance["device"] == DEVICE
    assert profile.quality["n_test"] + profile.quality["n_train"] == DEFAULT_MCU_KIT_SUBNETS
    ram = profile.provenance["toolchain_memory"]["measured_ram_kb"]
    assert ram["subnets"] == len(configs) and ram["median_ratio_to_peak"] == pytest.approx(1.25, 1e-2)
    predicted = profile.predict_latency_ms(configs)
    assert np.median(np.abs(predicted / truth - 1)) < 0.05
    assert len(load_validation(tmp_path / "board.validation.csv")["configs"]) == profile.quality["n_test"]
    # the app's call: limits given override the device's
    own = fit_profile_from_csv(filled, "mine", space=SPACE, ram_kb=200, flash_kb=900, command="uploaded in the app")
    assert dict(own.memory) == {"sram_kb": 200, "flash_kb": 900} and "overridden" in own.provenance["memory"]


def _good():
    configs = mcu_kit_configs(SPACE, DEVICE, MIN_ROWS + 1)
    return configs, _synthetic_board(configs)[1]


def _edited(tmp_path, column, index, value):
    configs, measured = _good()
    path = _template(tmp_path / "results.csv", configs, measured)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    rows[index][column] = value
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, TEMPLATE_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.mark.parametrize("column, index, value, message", [
    ("latency_ms", 2, "", r"row 3 \(m002.onnx\), column 'latency_ms' is empty; allowed: the latency measured on "
                          r"the board, in milliseconds \(fill it in, or delete the row"),
    ("latency_ms", 0, "fast", r"row 1 \(m000.onnx\), column 'latency_ms' = 'fast'; allowed: the latency"),
    ("latency_ms", 4, "-0.5", r"row 5 \(m004.onnx\), column 'latency_ms' = '-0.5'; allowed: .*a positive number"),
    ("latency_ms", 4, "0", r"column 'latency_ms' = '0'"),
    ("latency_ms", 4, "nan", r"column 'latency_ms' = 'nan'"),
    ("measured_ram_kb", 1, "-3", r"row 2 \(m001.onnx\), column 'measured_ram_kb' = '-3'; allowed: the toolchain's"),
    ("macs", 3, "12", r"row 4 \(m003.onnx\), column 'macs' = '12', but the config has \d+ MACs"),
    ("config", 3, '{"wid": 0}', r"row 4 \(m003.onnx\), column 'config': subnet config must have exactly"),
    ("device", 5, "stm32h743", r"column 'device' mixes \['stm32f746', 'stm32h743'\]"),
    ("file", 6, "m000.onnx", r"row 7 \(m000.onnx\): file 'm000.onnx' is listed twice"),
    ("file", 6, "", r"row 7 \(no file\), column 'file' is empty"),
])
def test_bad_templates_are_refused_naming_row_file_and_column(tmp_path, column, index, value, message):
    with pytest.raises(ValueError, match=message):
        fit_profile_from_csv(_edited(tmp_path, column, index, value), "x", space=SPACE)


def test_wrong_uses_of_a_template_are_refused(tmp_path, capsys):
    configs, measured = _good()
    few = _template(tmp_path / "few.csv", configs[:MIN_ROWS - 1], measured[:MIN_ROWS - 1])
    with pytest.raises(ValueError, match=rf"has {MIN_ROWS - 1} measured files; allowed: at least {MIN_ROWS}"):
        fit_profile_from_csv(few, "x", space=SPACE)
    good = _template(tmp_path / "good.csv", configs, measured)
    with pytest.raises(ValueError, match="--prior does not apply to a microcontroller kit's results.csv"):
        fit_profile_from_csv(good, "x", space=SPACE, prior="cpu-ort-1t")
    with pytest.raises(ValueError, match="2 CSVs given; allowed: one filled results.csv"):
        fit_profile_from_csv([good, good], "x", space=SPACE)
    unknown = _template(tmp_path / "unknown.csv", configs, measured, device="my-board")
    with pytest.raises(ValueError, match=r"device 'my-board' is not a bundled profile .* \(--ram-kb and --flash-kb\)"):
        fit_profile_from_csv(unknown, "x", space=SPACE)
    mine = fit_profile_from_csv(unknown, "x", space=SPACE, ram_kb=128, flash_kb=512)
    assert dict(mine.memory) == {"sram_kb": 128, "flash_kb": 512} and mine.precision == "int8"
    # a template without its latency column is neither kit's CSV: the message names both
    no_latency = tmp_path / "no-latency.csv"
    no_latency.write_text(good.read_text().replace("latency_ms", "time"))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['median_ms'.*microcontroller kit "
                                         r"\(profile-kit --mcu\)"):
        fit_profile_from_csv(no_latency, "x", space=SPACE)
    assert main(["profile-kit", "--space", "tiny-fmnist", "--mcu", DEVICE, "--batch-size", "2",
                 "--out", str(tmp_path / "k")]) == 2
    assert "--batch-size 2 with --mcu; allowed: 1" in capsys.readouterr().err


def test_a_template_saved_by_a_spreadsheet_is_read(tmp_path):
    """Saved with a byte-order mark and semicolons (a decimal-comma locale's CSV): the same rows."""
    configs, measured = _good()
    plain = _template(tmp_path / "plain.csv", configs, measured)
    rows = list(csv.reader(io.StringIO(plain.read_text())))
    saved = tmp_path / "saved.csv"
    with open(saved, "w", newline="", encoding="utf-8-sig") as fh:
        csv.writer(fh, delimiter=";").writerows(rows)
    assert is_mcu_results(saved)
    a, b = read_mcu_results(plain, SPACE), read_mcu_results(saved, SPACE)
    assert a.configs == b.configs and np.array_equal(a.latency_ms, b.latency_ms)
