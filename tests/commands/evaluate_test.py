import json
import math
import os

from tfgcrf import cli
from tfgcrf.evaluation.control import POINT_COUNTS

PHOTOS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "photos")
DIVERSITY = {"eob", "variance", "ssim_pairwise", "speckle", "speckle_flat", "colorfulness"}


def test_evaluate_writes_the_issue_schema_table_and_report(smoke_run, tmp_path, capsys):
    json_path, report_dir = tmp_path / "results.json", tmp_path / "report"
    argv = ["evaluate", "--model", str(smoke_run.run_dir), "--data", PHOTOS, "--samples", "2",
            "--limit", "2", "--seed", "3", "--json", str(json_path), "--report", str(report_dir)]
    assert cli.main(argv) == 0
    results = json.loads(json_path.read_text())
    assert results["images"] == 2 and results["samples"] == 2 and results["seed"] == 3
    methods = results["methods"]
    assert set(methods) == {"gcrf", "vae_mdn", "levin", "gray"}
    assert set(methods["gcrf"]) == DIVERSITY | {"psnr_points"}
    assert set(methods["vae_mdn"]) == DIVERSITY
    assert set(methods["levin"]) == {"psnr_points"}
    assert set(methods["gray"]) == {"eob", "speckle", "speckle_flat", "colorfulness", "psnr_points"}
    for name in ("gcrf", "levin", "gray"):
        assert list(methods[name]["psnr_points"]) == [str(count) for count in POINT_COUNTS]
    values = [v for m in methods.values() for v in m.values() if not isinstance(v, dict)]
    values += [v for m in methods.values() for v in m.get("psnr_points", {}).values()]
    assert all(isinstance(v, float) and math.isfinite(v) for v in values)
    assert 0 < methods["gcrf"]["ssim_pairwise"] <= 1 and methods["gray"]["colorfulness"] < 1
    out = capsys.readouterr().out
    assert "| G-CRF (ours) |" in out and "| Levin et al. 2004 |" in out
    assert sorted(os.listdir(report_dir)) == ["control.png", "psnr_points.png", "results.md", "samples.png"]


def test_evaluate_rejects_bad_arguments(tmp_path, capsys):
    assert cli.main(["evaluate", "--model", "x.keras", "--data", PHOTOS, "--samples", "1"]) == 2
    assert "tfgcrf: error: --samples must be at least 2" in capsys.readouterr().err
    assert cli.main(["evaluate", "--model", str(tmp_path / "none.keras"), "--data", PHOTOS]) == 2
    assert "tfgcrf: error: no such model file" in capsys.readouterr().err


def test_evaluate_reports_a_missing_data_folder(smoke_model_file, tmp_path, capsys):
    argv = ["evaluate", "--model", smoke_model_file, "--data", str(tmp_path / "nowhere"), "--samples", "2"]
    assert cli.main(argv) == 2
    assert "tfgcrf: error:" in capsys.readouterr().err
