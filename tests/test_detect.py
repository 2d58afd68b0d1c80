"""detect: slicing and merging, COCO reading, the data pipeline, and the command's errors."""

import json

import pytest
import torch

from detect_data import CATEGORIES, make_coco

from ptcli_detect.detections import Detections, LocalMask
from ptcli_detect.slicing import detect_sliced, greedy_merge, nms_merge, tile_grid


# --- tiles ------------------------------------------------------------------------------------


@pytest.mark.parametrize("width,height,size,overlap", [(1600, 1200, 640, 0.2), (640, 480, 640, 0.2), (1000, 700, 256, 0.5),
                                                       (300, 2000, 256, 0.0), (100, 80, 640, 0.2)])
def test_tiles_are_one_size_cover_the_image_and_overlap_as_asked(width, height, size, overlap):
    tiles = tile_grid(width, height, size, overlap)
    assert len({(t.width, t.height) for t in tiles}) == 1  # they batch together
    assert all(0 <= t.x and t.x + t.width <= width and 0 <= t.y and t.y + t.height <= height for t in tiles)
    covered = torch.zeros(height, width, dtype=torch.bool)
    for t in tiles:
        covered[t.y: t.y + t.height, t.x: t.x + t.width] = True
    assert covered.all()
    xs = sorted({t.x for t in tiles})
    for a, b in zip(xs, xs[1:]):  # neighbours share at least the overlap
        assert a + size - b >= round(size * overlap)


# --- merging ----------------------------------------------------------------------------------


def _detections(rows):
    """rows: (x1, y1, x2, y2, score, label)"""
    t = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    return Detections(t[:, :4], t[:, 4], t[:, 5].long())


def test_greedy_merge_joins_the_pieces_of_a_cut_object_per_class():
    found = _detections([
        (600, 100, 660, 160, 0.9, 1),  # the whole object (from the next tile)
        (600, 100, 640, 160, 0.8, 1),  # its left part, cut by a tile's edge
        (610, 110, 650, 150, 0.7, 2),  # another class in the same place: kept
        (900, 100, 950, 150, 0.6, 1),  # another object: kept
    ])
    merged = greedy_merge(found, 0.5)
    assert merged.labels.tolist() == [1, 2, 1]
    assert merged.boxes[0].tolist() == [600, 100, 660, 160] and merged.scores[0].item() == pytest.approx(0.9)
    assert merged.boxes[2].tolist() == [900, 100, 950, 150]


def test_greedy_merge_takes_the_union_box_and_mask():
    found = _detections([(0, 0, 40, 20, 0.9, 1), (30, 0, 60, 20, 0.5, 1)])
    found.masks = [LocalMask(0, 0, torch.ones(20, 40, dtype=torch.bool)), LocalMask(30, 0, torch.ones(20, 30, dtype=torch.bool))]
    merged = greedy_merge(found, 0.3)  # IoS of the two is 10/30
    assert len(merged) == 1 and merged.boxes[0].tolist() == [0, 0, 60, 20]
    full = merged.masks[0].full(80, 40)
    assert full[:20, :60].all() and full.sum() == 20 * 60


def test_greedy_merge_never_makes_a_box_looser_than_the_best_it_joins():
    """A tight best box absorbs a loose box (the whole image's, say): the result is the tight
    box. Only a best box that a tile edge cut grows, joined with the rest of its object."""
    from ptcli_detect.slicing import Tile, merge_tiles

    tight, loose = (100, 100, 162, 162, 0.9, 1), (80, 70, 186, 196, 0.6, 1)
    merged = greedy_merge(_detections([tight, loose]), 0.5, cut=torch.tensor([False, False]))
    assert merged.boxes.tolist() == [[100, 100, 162, 162]]
    # Through merge_tiles: tile A (0-256) holds the whole object tightly; the whole-image pass
    # (no edge cuts it) saw it loosely. The merged box is the tight one.
    tiles = [Tile(0, 0, 256, 256), Tile(200, 0, 256, 256)]
    outputs = [_detections([tight]), _detections([]), _detections([loose])]
    assert merge_tiles(tiles, outputs).boxes.tolist() == [[100, 100, 162, 162]]
    # The best box is a piece that tile B's left edge cut (its x1 at B's edge): it joins the
    # rest of the object, seen whole by tile A.
    piece = (0, 100, 30, 162, 0.95, 1)  # in tile B's pixels: image x 200-230
    merged = merge_tiles(tiles, [_detections([(170, 100, 230, 162, 0.7, 1)]), _detections([piece]), _detections([])])
    assert merged.boxes.tolist() == [[170, 100, 230, 162]] and merged.scores.tolist() == pytest.approx([0.95])


def test_nms_keeps_the_best_box_of_a_cluster_as_it_is():
    found = _detections([(0, 0, 50, 50, 0.6, 1), (2, 2, 52, 52, 0.9, 1), (0, 0, 50, 50, 0.8, 2)])
    kept = nms_merge(found, 0.5)
    assert sorted(zip(kept.labels.tolist(), kept.scores.tolist())) == [(1, pytest.approx(0.9)), (2, pytest.approx(0.8))]


def test_filtering_by_score_class_and_count():
    found = _detections([(0, 0, 5, 5, 0.3, 1), (0, 0, 5, 5, 0.9, 2), (0, 0, 5, 5, 0.7, 1), (0, 0, 5, 5, 0.8, 1)])
    assert found.filtered(0.5, None, 10).scores.tolist() == pytest.approx([0.9, 0.8, 0.7])
    assert found.filtered(0.5, {1}, 10).scores.tolist() == pytest.approx([0.8, 0.7])
    assert found.filtered(0.0, None, 2).scores.tolist() == pytest.approx([0.9, 0.8])


# --- sliced inference, with a detector that sees as torchvision's R-CNNs do ------------------------


class RedSquares(torch.nn.Module):
    """A stand-in for a COCO detector that finds solid red squares, seeing each image as
    torchvision's R-CNNs do: resized (antialiased) so the short side is 800 px and the long one
    at most 1333. Like a real detector, it misses what that resize shrinks under 4 px."""

    MIN_PIXELS = 4

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, images):
        import numpy as np
        from scipy import ndimage

        self.calls.append(len(images))
        out = []
        for image in images:
            height, width = image.shape[-2:]
            scale = min(800 / min(height, width), 1333 / max(height, width))
            seen = torch.nn.functional.interpolate(image[None], size=(round(height * scale), round(width * scale)),
                                                   mode="bilinear", antialias=True)[0]
            red = ((seen[0] > 0.7) & (seen[1] < 0.3) & (seen[2] < 0.3)).numpy()
            labelled, _ = ndimage.label(red)
            boxes = []
            for rows, cols in ndimage.find_objects(labelled):
                if rows.stop - rows.start >= self.MIN_PIXELS and cols.stop - cols.start >= self.MIN_PIXELS:
                    boxes.append([cols.start / scale, rows.start / scale, cols.stop / scale, rows.stop / scale])
            boxes = torch.tensor(np.array(boxes, dtype=np.float32)).reshape(-1, 4)
            out.append({"boxes": boxes, "scores": torch.full((len(boxes),), 0.9), "labels": torch.ones(len(boxes), dtype=torch.int64)})
        return out


def _scene(width, height, squares):
    image = torch.full((3, height, width), 0.5)
    for x, y, size in squares:
        image[:, y: y + size, x: x + size] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    return image


def _runner(model):
    return lambda images: [Detections.from_output(o) for o in model(images)]


def test_a_small_object_lost_in_the_resize_is_found_with_slicing():
    model = RedSquares()
    image = _scene(2400, 1800, [(1500, 900, 6)])  # 6 px: under 3 px at the whole image's 0.44 scale
    assert len(_runner(model)([image])[0]) == 0
    found = detect_sliced(image, _runner(model), size=640, overlap=0.2, batch_size=8)
    assert len(found) == 1
    assert found.boxes[0].tolist() == pytest.approx([1500, 900, 1506, 906], abs=1.5)


@pytest.mark.parametrize("x", [470, 480, 500, 512, 560, 600, 620])  # across the borders of the first two tiles (0-640, 512-1152)
def test_an_object_cut_by_a_tile_border_is_reported_once(x):
    model = RedSquares()
    image = _scene(1600, 1200, [(x, 300, 60), (1300, 900, 30)])
    found = detect_sliced(image, _runner(model), size=640, overlap=0.2, batch_size=4)
    assert len(found) == 2, found.boxes
    boxes = sorted(found.boxes.tolist())
    assert boxes[0] == pytest.approx([x, 300, x + 60, 360], abs=1.5)
    assert boxes[1] == pytest.approx([1300, 900, 1330, 930], abs=1.5)


def test_nms_leaves_a_small_cut_piece_which_is_why_greedy_merging_is_the_default():
    model = RedSquares()
    image = _scene(1600, 1200, [(480, 300, 60)])  # the first tile holds 480-640: all of it; the second 512-540
    kept = detect_sliced(image, _runner(model), size=640, overlap=0.2, batch_size=4, merge="nms")
    assert len(kept) == 2  # IoU of the piece and the whole is 28/60 < 0.5
    assert len(detect_sliced(image, _runner(model), size=640, overlap=0.2, batch_size=4, merge="greedy")) == 1


def test_tiles_go_through_the_model_in_batches_then_the_whole_image():
    model = RedSquares()
    image = _scene(1600, 1200, [])
    tiles = len(tile_grid(1600, 1200, 640, 0.2))
    detect_sliced(image, _runner(model), size=640, overlap=0.2, batch_size=4)
    assert model.calls == [4] * (tiles // 4) + ([tiles % 4] if tiles % 4 else []) + [1]


# --- COCO files ---------------------------------------------------------------------------------


@pytest.fixture
def coco(tmp_path):
    return make_coco(tmp_path / "coco", {"train": 6, "val": 2})


def _rewrite(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return path


def test_categories_map_to_contiguous_labels_and_negatives_are_kept(coco):
    from ptcli_detect.coco import read_coco
    from ptcli_detect.cocodata import CocoDetectionSet

    data = read_coco(coco / "train.json")
    assert data.category_ids == [cid for cid, _, _ in CATEGORIES] == [3, 7, 12]
    assert data.label_of() == {3: 1, 7: 2, 12: 3}
    dataset = CocoDetectionSet(data, data.label_of(), masks=False)
    image, target = dataset[0]  # the negative
    assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
    assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    wanted = [data.label_of()[c] for c in data.images[1].category_ids]
    assert dataset[1][1]["labels"].tolist() == wanted


@pytest.mark.parametrize("seed", range(6))
def test_augmentation_moves_boxes_and_masks_with_the_image(coco, seed):
    from ptcli_detect.coco import read_coco
    from ptcli_detect.cocodata import CocoDetectionSet

    data = read_coco(coco / "train.json")
    dataset = CocoDetectionSet(data, data.label_of(), masks=True, augment="strong", train=True)
    torch.manual_seed(seed)
    for index in range(1, len(dataset)):
        image, target = dataset[index]
        n = len(target["boxes"])
        assert target["labels"].shape == target["area"].shape == target["iscrowd"].shape == (n,)
        assert target["masks"].shape == (n, *image.shape[-2:])
        for box, mask in zip(target["boxes"], target["masks"]):
            ys, xs = mask.nonzero(as_tuple=True)
            assert len(xs) > 0
            tight = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            # the mask's own box agrees with the moved box (polygon rasterising differs by a pixel or two)
            assert [float(v) for v in tight] == pytest.approx(box.tolist(), abs=3)


def test_sanitising_drops_a_box_with_its_label_area_and_crowd_flag():
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    from ptcli_detect.cocodata import labels_and_more

    boxes = tv_tensors.BoundingBoxes(torch.tensor([[0, 0, 10, 10], [5, 5, 5, 9], [1, 1, 8, 8]], dtype=torch.float32),
                                     format="XYXY", canvas_size=(20, 20))
    target = {"boxes": boxes, "labels": torch.tensor([1, 2, 3]), "area": torch.tensor([100.0, 0.0, 49.0]),
              "iscrowd": torch.tensor([0, 1, 0])}
    _, out = v2.SanitizeBoundingBoxes(labels_getter=labels_and_more)(torch.zeros(3, 20, 20), target)
    assert out["labels"].tolist() == [1, 3] and out["area"].tolist() == [100.0, 49.0] and out["iscrowd"].tolist() == [0, 0]


@pytest.mark.parametrize("change,message", [
    (lambda d: d.pop("annotations"), "is not a COCO annotation file: the file has no 'annotations' key"),
    (lambda d: d["images"][0].pop("width"), "image 0 has no 'width' key"),
    (lambda d: d["annotations"][0].update(bbox=[150, 10, 30, 30]), "outside the"),
    (lambda d: d["annotations"][0].update(bbox=[10, 10, 0, 30]), "has a box with no area"),
    (lambda d: d["annotations"][0].update(category_id=99), "has category_id 99, which is not in 'categories' (3, 7, 12)"),
    (lambda d: d["images"][1].update(file_name="gone.png"), "is listed as gone.png but"),
    (lambda d: d["annotations"][0].update(image_id=999), "belongs to image 999, which is not in 'images'"),
])
def test_a_bad_annotation_file_is_one_line_naming_what_is_wrong(cli, coco, tmp_path, change, message):
    from conftest import write_yaml
    from detect_data import detect_config

    _rewrite(coco / "train.json", change)
    config = write_yaml(tmp_path / "d.yaml", detect_config(tmp_path, coco))
    result = cli("train", config)
    assert result.exit_code == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and message in line and "train.json" in line, line


def test_a_box_outside_names_its_annotation_and_image(coco):
    from ptcli.errors import UsageError
    from ptcli_detect.coco import read_coco

    path = _rewrite(coco / "val.json", lambda d: d["annotations"][0].update(bbox=[-20, 5, 30, 30]))
    data = json.loads(path.read_text())
    first = data["annotations"][0]
    with pytest.raises(UsageError, match=rf"annotation {first['id']} in image {first['image_id']} \(\d+\.png\)"):
        read_coco(path)


def test_masks_round_trip_through_coco_rle():
    from ptcli_detect.coco import rle_decode, rle_encode

    mask = torch.zeros(37, 53, dtype=torch.bool)
    mask[3:20, 10:40] = True
    mask[30, 52] = True
    rle = rle_encode(mask)
    assert rle["size"] == [37, 53] and isinstance(rle["counts"], str)
    assert torch.equal(rle_decode(json.loads(json.dumps(rle))), mask)


# --- grouped batches ------------------------------------------------------------------------------


def test_aspect_ratio_groups_batch_alike_images_once_each_per_epoch():
    from ptcli.training.sampling import GroupedBatches, aspect_ratio_groups

    ratios = [4 / 3, 1.0, 3 / 4] * 7 + [4 / 3]
    groups = aspect_ratio_groups(ratios)
    assert len(set(groups)) == 3
    sampler = GroupedBatches(groups, 4, seed=1)
    epochs = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        assert sorted(i for b in batches for i in b) == list(range(len(ratios)))
        full = [b for b in batches if len(b) == 4]
        assert sum(len({groups[i] for i in b}) == 1 for b in full) >= len(full) - 1  # only the leftovers mix
        epochs.append(batches)
        sampler.set_epoch(epoch)
        assert list(sampler) == batches  # a function of (seed, epoch): resuming repeats it
    assert epochs[0] != epochs[1]
