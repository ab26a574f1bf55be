"""Presentation of evaluation results: markdown tables in the paper's layout, PNG sheets, a plot.

The plot is drawn with Pillow (matplotlib is not a dependency of the package).
"""

import math
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tfgcrf.evaluation.control import POINT_COUNTS

METHOD_LABELS = {
    "gcrf": "G-CRF (ours)",
    # Ablation steps of the G-CRF control (`tfgcrf evaluate --ablation`), cumulative.
    "gcrf_grid": "G-CRF: learned S alone on the grid (before)",
    "gcrf_local": "+ local smoothness (grid)",
    "gcrf_prior": "+ local + model prior 0.002 (grid)",
    "gcrf_patch": "hints as their 7x7 patches' pixels (grid)",
    "gcrf_points": "+ point refinement (256 px)",
    "gcrf_fitted": "G-CRF + prior fitted to the hints 0.003",
    "gcrf_levin": "G-CRF, propagation with Levin et al. 2004's affinities",
    "gcrf_matting": "G-CRF, propagation with the matting Laplacian",
    "vae_mdn": "VAE-MDN (G-CRF bypassed)",
    "levin": "Levin et al. 2004",
    "gray": "gray (ab = 0)",
}
# |H| shown in the control sheet.
SHEET_POINTS = 10
# (key, column title) of the diversity/consistency table, in the paper's Table 2 order first.
DIVERSITY_COLUMNS = (
    ("eob", "eob."),
    ("variance", "Var."),
    ("ssim_pairwise", "SSIM."),
    ("speckle", "speckle"),
    ("speckle_flat", "speckle (flat)"),
    ("colorfulness", "colorfulness"),
    ("colorfulness_ratio", "colorf. / truth"),
    ("auc", "AuC (top)"),
    ("auc_best", "AuC (best of N)"),
)
# The ground truth's row of that table.
_TRUTH_CELLS = {"speckle": "1", "speckle_flat": "1", "colorfulness_ratio": "1"}
_PLOT_COLORS = {
    "gcrf": (200, 40, 40),
    "gcrf_grid": (240, 170, 170),
    "gcrf_local": (225, 120, 120),
    "gcrf_prior": (210, 80, 80),
    "gcrf_patch": (160, 20, 20),
    "gcrf_points": (120, 10, 10),
    "vae_mdn": (230, 140, 20),
    "levin": (40, 90, 200),
    "gray": (110, 110, 110),
}
# Curves of further models' G-CRF (`gcrf/<model>` keys after the first).
_EXTRA_COLORS = ((40, 160, 60), (150, 60, 170), (20, 150, 160), (120, 80, 30))


def _number(value):
    if value is None:
        return ""
    if value != 0 and abs(value) < 1e-2:
        return f"{value:.2e}"
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"


def method_label(name):
    """Table label of a results key: `gcrf` -> "G-CRF (ours)", `gcrf/new` -> "G-CRF (ours) [new]"."""
    method, _, model = name.partition("/")
    label = METHOD_LABELS[method]
    return f"{label} [{model}]" if model else label


def _diversity_table(methods, truth):
    lines = [
        "| Method | " + " | ".join(title for _, title in DIVERSITY_COLUMNS) + " |",
        "|" + " --- |" * (len(DIVERSITY_COLUMNS) + 1),
    ]
    for name, metrics in methods.items():
        if any(key in metrics for key, _ in DIVERSITY_COLUMNS):
            cells = [_number(metrics.get(key)) for key, _ in DIVERSITY_COLUMNS]
            lines.append(f"| {method_label(name)} | " + " | ".join(cells) + " |")
    if "colorfulness" in truth:
        cells = [
            _number(truth["colorfulness"]) if key == "colorfulness" else _TRUTH_CELLS.get(key, "")
            for key, _ in DIVERSITY_COLUMNS
        ]
        lines.append("| ground truth | " + " | ".join(cells) + " |")
    return lines


def markdown_tables(results):
    """The two tables (paper Tables 2 and 3) as markdown, from the `evaluate` results dict.

    With per-domain results (`results["domains"]`), a diversity table per domain follows.
    """
    methods = results["methods"]
    lines = [
        f"Diversity and consistency ({results['images']} images, {results['samples']} samples each, "
        "model resolution; speckle = chroma gradient energy / ground truth's; AuC: Zhang et al. "
        "2016, ab error thresholds 0-150):",
        "",
        *_diversity_table(methods, results.get("ground_truth", {})),
    ]
    for domain, part in results.get("domains", {}).items():
        lines += [
            "",
            f"Domain {domain} ({part['images']} images):",
            "",
            *_diversity_table(part["methods"], part.get("ground_truth", {})),
        ]
    if not any("psnr_points" in metrics for metrics in methods.values()):
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "Control: PSNR (dB, RGB, 256x256) vs number of revealed 7x7 points |H|:",
        "",
        "| Method | " + " | ".join(f"\\|H\\|={count}" for count in POINT_COUNTS) + " |",
        "|" + " --- |" * (len(POINT_COUNTS) + 1),
    ]
    for name, metrics in methods.items():
        if "psnr_points" in metrics:
            cells = [f"{metrics['psnr_points'][str(count)]:.2f}" for count in POINT_COUNTS]
            lines.append(f"| {method_label(name)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _font(size):
    return ImageFont.load_default(size=size)


def image_sheet(rows, tile=128, label_width=200, column_titles=()):
    """Tiles labelled rows of uint8 images into one sheet.

    Args:
      rows: list of `(label, [images])`, each image `[H, W, 3]` uint8 (resized to `tile`).
      tile: side of each tile in pixels.
      label_width: width of the label column.
      column_titles: optional titles drawn above the columns.

    Returns:
      A PIL image.
    """
    columns = max(len(images) for _, images in rows)
    header = 20 if column_titles else 0
    sheet = Image.new(
        "RGB", (label_width + columns * (tile + 2), header + len(rows) * (tile + 2)), "white"
    )
    draw = ImageDraw.Draw(sheet)
    font = _font(13)
    for column, title in enumerate(column_titles):
        draw.text((label_width + column * (tile + 2) + 2, 3), title, fill="black", font=font)
    for row, (label, images) in enumerate(rows):
        top = header + row * (tile + 2)
        draw.multiline_text((4, top + 4), label, fill="black", font=font)
        for column, image in enumerate(images):
            picture = Image.fromarray(np.asarray(image, np.uint8)).resize((tile, tile), Image.BICUBIC)
            sheet.paste(picture, (label_width + column * (tile + 2), top))
    return sheet


def psnr_plot(results, size=(640, 420)):
    """PSNR vs |H| (log axis) for every method with a control curve, as a PIL image."""
    curves = {
        name: [metrics["psnr_points"][str(count)] for count in POINT_COUNTS]
        for name, metrics in results["methods"].items()
        if "psnr_points" in metrics
    }
    values = [value for curve in curves.values() for value in curve]
    low, high = math.floor(min(values)) - 1, math.ceil(max(values)) + 1
    width, height = size
    left, right, top, bottom = 60, 190, 36, 50
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = _font(13)
    log_low, log_high = math.log10(POINT_COUNTS[0]), math.log10(POINT_COUNTS[-1])

    def to_pixel(count, psnr):
        x = left + (math.log10(count) - log_low) / (log_high - log_low) * (width - left - right)
        y = height - bottom - (psnr - low) / (high - low) * (height - top - bottom)
        return x, y

    step = max(1, round((high - low) / 8))
    for tick in range(low, high + 1, step):
        _, y = to_pixel(POINT_COUNTS[0], tick)
        draw.line([(left, y), (width - right, y)], fill=(225, 225, 225))
        draw.text((left - 8, y), str(tick), fill="black", font=font, anchor="rm")
    for count in POINT_COUNTS:
        x, _ = to_pixel(count, low)
        draw.line([(x, top), (x, height - bottom)], fill=(225, 225, 225))
        draw.text((x, height - bottom + 6), str(count), fill="black", font=font, anchor="mt")
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    draw.text(
        ((left + width - right) / 2, height - 18), "revealed 7x7 points |H|", fill="black", font=font, anchor="mm"
    )
    draw.text((8, 8), "PSNR (dB)", fill="black", font=font)
    extra = iter(_EXTRA_COLORS * len(curves))
    used = set()
    for row, (name, curve) in enumerate(curves.items()):
        method = name.partition("/")[0]
        color = _PLOT_COLORS[method] if method not in used else next(extra)
        used.add(method)
        points = [to_pixel(count, value) for count, value in zip(POINT_COUNTS, curve)]
        draw.line(points, fill=color, width=2)
        for x, y in points:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)
        legend_y = top + 10 + row * 20
        draw.line([(width - right + 12, legend_y), (width - right + 32, legend_y)], fill=color, width=2)
        draw.text((width - right + 38, legend_y), method_label(name), fill="black", font=font, anchor="lm")
    return image


def write_report(folder, results, kept):
    """Sheets of the kept images (samples per method; control at |H| = 10) and the PSNR plot."""
    from tfgcrf import color, fullres

    os.makedirs(folder, exist_ok=True)
    sample_rows, control_rows, edits = [], [], []
    for number, image in enumerate(kept, 1):
        lightness = image["l_full"][0, ..., 0] * color.L_SCALE
        shown = image["control"]
        sample_rows.append((f"image {number}\nground truth", [image["truth"]]))
        for name, ab in image["samples"].items():
            rendered = fullres.to_photo(ab, lightness).numpy()
            sample_rows.append((method_label(name).replace(" [", "\n["), list(rendered)))
        if shown is not None:
            edits = [key for key in shown if key.partition("/")[0] == "gcrf"]
            columns = ["hints", "levin", *edits, "gray", "truth"]
            control_rows.append((f"image {number}", [shown[key] for key in columns]))
    image_sheet(sample_rows).save(os.path.join(folder, "samples.png"))
    with open(os.path.join(folder, "results.md"), "w") as handle:
        handle.write(markdown_tables(results))
    if not control_rows:
        return
    titles = [f"{SHEET_POINTS} hints", "Levin et al.", *(method_label(k) for k in edits), "gray",
              "ground truth"]
    sheet = image_sheet(control_rows, tile=256, label_width=80, column_titles=titles)
    sheet.save(os.path.join(folder, "control.png"))
    psnr_plot(results).save(os.path.join(folder, "psnr_points.png"))
