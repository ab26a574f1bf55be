import numpy as np

from tfgcrf.evaluation import report

RESULTS = {
    "methods": {
        "gcrf": {
            "eob": 1.1e-4,
            "variance": 8.8e-3,
            "ssim_pairwise": 0.61,
            "speckle": 0.9,
            "speckle_flat": 1.2,
            "colorfulness": 25.3,
            "colorfulness_ratio": 0.762,
            "auc": 0.91,
            "auc_best": 0.95,
            "psnr_points": {"1": 22.1, "5": 24.0, "10": 25.5, "50": 28.0, "100": 29.9},
        },
        "vae_mdn": {"eob": 0.035, "variance": 0.018, "ssim_pairwise": 0.49, "speckle": 1.9},
        "levin": {"psnr_points": {"1": 21.1, "5": 23.0, "10": 26.5, "50": 28.5, "100": 30.0}},
        "gray": {"eob": 0.02, "psnr_points": {"1": 21.0, "5": 21.0, "10": 21.0, "50": 21.0, "100": 21.0}},
    },
    "images": 10,
    "samples": 8,
    "seed": 0,
    "ground_truth": {"colorfulness": 33.2},
}


def test_markdown_tables_have_a_row_per_method_with_its_metrics():
    text = report.markdown_tables(RESULTS)
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert ("| G-CRF (ours) | 1.10e-04 | 8.80e-03 | 0.610 | 0.900 | 1.200 | 25.30 | 0.762 | 0.910 "
            "| 0.950 |") in text
    assert rows["VAE-MDN (G-CRF bypassed)"].count("|") == 11  # absent metrics are empty cells
    assert "| Levin et al. 2004 | 21.10 | 23.00 | 26.50 | 28.50 | 30.00 |" in text
    assert "| ground truth |  |  |  | 1 | 1 | 33.20 | 1 |  |  |" in text
    assert "10 images, 8 samples" in text
    # Levin only has control numbers: no row in the diversity table.
    assert sum("Levin" in line for line in text.splitlines()) == 1


def test_psnr_plot_draws_every_curve():
    image = np.asarray(report.psnr_plot(RESULTS))
    assert image.shape == (420, 640, 3)
    for name in ("gcrf", "levin", "gray"):
        color = report._PLOT_COLORS[name]
        assert np.all(image == color, axis=-1).sum() > 50, name
    assert not np.all(image == report._PLOT_COLORS["vae_mdn"], axis=-1).any()


def test_image_sheet_tiles_rows():
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    sheet = np.asarray(report.image_sheet([("a", [red]), ("b", [red, red, red])], tile=16, label_width=20))
    assert sheet.shape == (2 * 18, 20 + 3 * 18, 3)
    assert (sheet[18 + 5, 20 + 2 * 18 + 5] == [255, 0, 0]).all()
    assert (sheet[5, 20 + 2 * 18 + 5] == [255, 255, 255]).all()  # row "a" has one image only


def test_image_sheet_column_titles_add_a_header():
    gray = np.full((8, 8, 3), 128, np.uint8)
    plain = report.image_sheet([("a", [gray])], tile=16, label_width=20)
    titled = report.image_sheet([("a", [gray])], tile=16, label_width=20, column_titles=["x"])
    assert titled.size == (plain.size[0], plain.size[1] + 20)
    assert (np.asarray(titled)[20 + 5, 25] == 128).all()


def test_two_models_and_domains_get_labelled_rows_and_tables():
    results = dict(RESULTS)
    newer = dict(RESULTS["methods"]["gcrf"], psnr_points={"1": 25.1, "5": 26.0, "10": 27.5, "50": 30.0,
                                                           "100": 31.9})
    results["methods"] = {"gcrf/old": RESULTS["methods"]["gcrf"], "gcrf/new": newer,
                          "levin": RESULTS["methods"]["levin"]}
    results["domains"] = {"faces": {"images": 3, "methods": {"gcrf/new": {"auc": 0.5}},
                                    "ground_truth": {"colorfulness": 20.0}}}
    text = report.markdown_tables(results)
    assert "| G-CRF (ours) [old] | 1.10e-04" in text and "| G-CRF (ours) [new] | 25.10 |" in text
    assert "Domain faces (3 images):" in text
    assert "| G-CRF (ours) [new] |  |  |  |  |  |  |  | 0.500 |  |" in text
    image = np.asarray(report.psnr_plot(results))
    assert np.all(image == report._PLOT_COLORS["gcrf"], axis=-1).sum() > 50
    assert np.all(image == report._EXTRA_COLORS[0], axis=-1).sum() > 50
