"""Region-level Dynamic ECC: the tile mask and its validation, sparse coding, the cloud on regions, the edge's merge,
per-region FLOPs, and the region gate's statistics."""
import numpy as np
import pytest
import torch

from eccentric_det.checkpoint import load_model
from eccentric_det.codec import FIELD_TILES, PayloadError, build_codec
from eccentric_det.codec.tiles import cell_mask, decode_tiles, dilate_tiles, encode_tiles, region_boxes, region_cells
from eccentric_det.tasks import get_eccentric_cfg
from eccentric_det.split.region_gate import TILE_STAT_NAMES, tile_statistics
from eccentric_det.split.regions import centre_tiles
from eccentric_det.modeling.meta_arch.regions import in_tiles

CONFIG = "configs/FashionDet/dynamic_region_ecc.yaml"


@pytest.fixture(scope="module")
def model():
    m = load_model(get_eccentric_cfg(CONFIG, ["MODEL.DEVICE", "cpu"]))
    return m.eval()


@pytest.fixture(scope="module")
def inp():
    rng = np.random.RandomState(3)
    img = np.full((256, 256, 3), 200, np.uint8)
    for _ in range(6):  # bright textured patches, something for both detectors to find
        y, x = rng.randint(0, 200, 2)
        img[y:y + 50, x:x + 40] = rng.randint(0, 255, (50, 40, 3))
    return {"image": torch.as_tensor(img.transpose(2, 0, 1).copy()), "height": 256, "width": 256}


def test_tile_mask_round_trip_and_refusals():
    mask = np.zeros((3, 5), bool)
    mask[0, 1] = mask[2, 4] = True
    data = encode_tiles(mask, 8)
    assert len(data) == 1 + 2 and np.array_equal(decode_tiles(data, (20, 33), 8), mask)  # 3x5 tiles of 8 cells
    with pytest.raises(PayloadError, match="holds 4 bytes"):
        decode_tiles(data + b"\0", (20, 33), 8)
    with pytest.raises(PayloadError, match="this model's are 8"):
        decode_tiles(bytes([4]) + data[1:], (20, 33), 8)
    with pytest.raises(PayloadError, match="beyond its grid"):
        decode_tiles(data[:2] + bytes([data[2] | 1]), (20, 33), 8)
    with pytest.raises(PayloadError, match="no tile"):
        decode_tiles(encode_tiles(np.zeros((3, 5), bool), 8), (20, 33), 8)
    with pytest.raises(ValueError, match="multiple of 4"):
        encode_tiles(mask, 6)


def test_region_boxes_cover_every_tile_once_and_merge_overlaps():
    t = np.zeros((4, 4), bool)
    t[0, 0] = t[1, 1] = True  # diagonal neighbours: one group
    t[3, 3] = True
    assert region_boxes(t) == [(0, 0, 2, 2), (3, 3, 4, 4)]
    u = np.zeros((4, 4), bool)
    u[0, 0:3] = u[1, 2] = u[2, 2] = True  # a hook, and a lone tile inside its bounding box: one region
    u[2, 0] = True
    assert region_boxes(u) == [(0, 0, 3, 3)]


def test_region_coding_codes_only_its_tiles():
    torch.manual_seed(0)
    codec = build_codec("hyperprior", 16, 16, 8, 16, 2).eval()
    x = torch.randn(1, 16, 64, 48) * 3
    y = codec.analysis(x)
    full = codec.compress(x)[0]
    tiles = np.zeros((4, 3), bool)  # y is 32x24: 4x3 tiles of 8 cells
    tiles[1, 2] = True
    y_cells, z_cells = region_cells(tiles, 8, (32, 24))
    assert y_cells.sum() == 64 and z_cells.sum() == 4
    one = codec.compress(x, regions=[(y_cells, z_cells, encode_tiles(tiles, 8))])[0]
    assert sum(map(len, one.strings)) < sum(map(len, full.strings)) / 4
    y_hat = codec.decompress_latent([one])[0]
    assert (y_hat[:, y_cells] - y[0][:, y_cells]).abs().max() <= 0.5 + 1e-4  # coded: within rounding of y
    # every tile sent codes what the whole payload codes
    every = np.ones((4, 3), bool)
    whole = codec.compress(x, regions=[(*region_cells(every, 8, (32, 24)), encode_tiles(every, 8))])[0]
    assert torch.equal(codec.decompress_latent([whole]), codec.decompress_latent([full]))


def test_region_payload_is_validated_against_the_image_size(model, inp):
    model.threshold = 0.0
    d = model.edge_step([inp])[0]
    assert d.offload and d.tiles.all() and FIELD_TILES in d.payload.fields
    spec = model.payload_spec()
    assert spec.tile == 4 and FIELD_TILES in spec.fields  # an 8x8 grid of tiles: 1 + 8 bytes
    p = d.payload
    spec.check(p)
    bad = [{**p.fields, FIELD_TILES: v} for v in (b"", b"\x04", bytes([4] + [0xFF] * 9),
                                                        bytes([8] + [0xFF] * 8), bytes([4] + [0] * 8))]
    for fields in bad:
        with pytest.raises(PayloadError):
            spec.check(type(p)(p.kind, p.fingerprint, p.image_size, p.output_size, p.strings, fields))
    one = np.zeros((8, 8), bool)
    one[0, 0] = True  # claims one tile but carries the strings of 64: over the bounds one tile allows
    with pytest.raises(PayloadError, match=r"string \d holds"):
        spec.check(type(p)(p.kind, p.fingerprint, p.image_size, p.output_size, p.strings,
                           {**p.fields, FIELD_TILES: encode_tiles(one, 4)}))
    whole = get_eccentric_cfg("configs/FashionDet/adaptive_ecc_vr.yaml", ["MODEL.DEVICE", "cpu"])
    with pytest.raises(PayloadError, match="does not read"):
        load_model(whole).eval().payload_spec().check(p)


def test_every_tile_sent_gives_the_whole_image_result(model, inp):
    model.threshold, model.policy = 0.0, "dynamic"
    region = model([inp])[0]
    model.policy = "always"
    whole = model([inp])[0]
    model.policy = "dynamic"
    assert region["eccentric"]["tiles"] == 64
    assert torch.allclose(region["instances"].scores, whole["instances"].scores, atol=1e-4)
    assert torch.allclose(region["instances"].pred_boxes.tensor, whole["instances"].pred_boxes.tensor, atol=1e-2)


def test_the_edge_merges_cloud_regions_with_its_own_detections(model, inp):
    model.policy = "dynamic"
    probs = model.edge_region_answer(model.edge_input(inp)[0], None, (256, 256), (256, 256))[1]
    model.threshold = float(probs.max())  # the most unsure tile, and one tile of context around it
    d = model.edge_step([inp])[0]
    assert np.array_equal(d.tiles, dilate_tiles(probs.numpy() >= model.threshold, 1)) and 4 <= d.tiles.sum() <= 9
    assert len(d.payload) < len(model.edge([inp])[0]) / 2
    cloud = model.cloud([d.payload.to_bytes()])[0]
    tile_px = model.region_tile * model.latent_stride()
    assert tile_px == 32 and in_tiles(cloud["instances"].pred_boxes.tensor, d.tiles, tile_px).all()
    out = model([inp])[0]
    inside = in_tiles(out["instances"].pred_boxes.tensor, d.tiles, tile_px)
    assert inside.sum() == len(cloud["instances"])
    outside = d.answer[~in_tiles(d.answer.pred_boxes.tensor, d.tiles, tile_px)]
    assert (~inside).sum() == len(outside)
    assert torch.allclose(out["instances"].scores[~inside].sort().values, outside.scores.sort().values)
    assert out["eccentric"]["tiles"] == d.tiles.sum() and out["eccentric"]["crops"]


def test_one_merge_for_instances_and_the_wire():
    """The in-process merge (Instances) and the client's (wire format) are one rule: the edge's detections centred
    outside the sent tiles and the cloud's, by score, the edge's first on equal scores."""
    from eccentric_det.modeling.meta_arch.regions import merge_regions
    from eccentric_det.serving.detections import dict_to_instances, instances_to_dict
    from eccentric_det.split.regions import merge_region_detections

    tiles = np.zeros((2, 2), bool)
    tiles[0, 0] = True  # tiles of 32 px on a 64x64 input; detections at the 128x128 output
    edge = {"boxes": [[0, 0, 40, 40], [70, 70, 120, 120], [80, 0, 120, 40]], "scores": [0.875, 0.5, 0.75],
            "classes": [0, 1, 2], "image_size": [128, 128]}
    cloud = {"boxes": [[10, 10, 50, 50]], "scores": [0.75], "classes": [3], "image_size": [128, 128]}
    wire = merge_region_detections(edge, cloud, tiles, 32, (64, 64))
    assert wire["classes"] == [2, 3, 1] and wire["scores"] == [0.75, 0.75, 0.5]
    merged = merge_regions(dict_to_instances(edge), dict_to_instances(cloud), tiles, 32, (64, 64))
    assert instances_to_dict(merged) == wire


def test_region_cloud_flops_fall_with_the_area_sent(model, inp):
    from eccentric_det.evaluation.flops import edge_cloud_gflops, region_cloud_gflops

    whole = edge_cloud_gflops(model, inp, get_eccentric_cfg(CONFIG).MODEL.RESNETS)["cloud"]
    cache = {}
    model.threshold = 0.0
    every = region_cloud_gflops(model, inp, cache)
    model.threshold = 1.01
    assert region_cloud_gflops(model, inp, cache) == 0.0
    probs = model.edge_region_answer(model.edge_input(inp)[0], None, (256, 256), (256, 256))[1]
    model.threshold = float(probs.max())
    one = region_cloud_gflops(model, inp, cache)
    assert 0 < one < every / 2 and abs(every - whole) / whole < 0.15


def test_tile_statistics_by_hand():
    boxes = np.array([[70, 5, 90, 25], [10, 10, 30, 30]], np.float32)  # centres in tiles (0, 1) and (0, 0)
    stats = tile_statistics(boxes, np.array([0.9, 0.4]), np.array([[70, 5, 90, 25], [140, 140, 160, 160]]),
                            np.array([3.0, 3.0]), (128, 192), 64, (2, 3))
    col = {n: stats[:, i] for i, n in enumerate(TILE_STAT_NAMES)}
    assert stats.shape == (6, len(TILE_STAT_NAMES))
    assert col["max_score"][[0, 1]].tolist() == pytest.approx([0.4, 0.9])
    assert col["n_unsure"].tolist() == [1, 0, 0, 0, 0, 0] and col["n_confident"].tolist() == [0, 1, 0, 0, 0, 0]
    assert col["n_objects"].tolist() == [0, 1, 0, 0, 0, 1]
    assert col["n_unexplained"].tolist() == [0, 0, 0, 0, 0, 1]  # tile (0, 1)'s object has a confident box
    assert col["unsure_mass"][0] == pytest.approx(0.24) and col["unsure_mass"][2] == 0


def test_region_configs_are_checked():
    for opts, match in ((["MODEL.ECCENTRIC.OFFLOAD.REGION.TILE", 6], "multiple of 4"),
                        (["MODEL.ECCENTRIC.OFFLOAD.POLICY", "always"], "POLICY 'dynamic'"),
                        (["MODEL.ECCENTRIC.CODEC.NAME", "factorized", "MODEL.ECCENTRIC.CODEC.RATE_WEIGHTS", [], "MODEL.ECCENTRIC.CODEC.RATE", 0.0,
                          "MODEL.WEIGHTS", "", "MODEL.ECCENTRIC.EDGE.WEIGHTS", ""], "hyperprior codec")):
        with pytest.raises(ValueError, match=match):
            load_model(get_eccentric_cfg(CONFIG, ["MODEL.DEVICE", "cpu"] + opts))


def test_dilate_tiles():
    t = np.zeros((4, 5), bool)
    t[0, 0] = True
    assert dilate_tiles(t, 0).sum() == 1 and dilate_tiles(t, 1).sum() == 4 and dilate_tiles(t, 2).sum() == 9


def test_cell_mask_crops_partial_tiles():
    m = cell_mask(np.array([[True, False], [False, True]]), 4, (6, 7))
    assert m.shape == (6, 7) and m[:4, :4].all() and m[4:, 4:].all() and not m[:4, 4:].any()


def test_region_payloads_over_the_network_merge_on_the_edge(inp, tmp_path):
    """tools/cloud_server.py in a subprocess with the cloud half; the real EdgeClient merges its answer."""
    from eccentric_det.deploy.torch_edge import edge_client
    from eccentric_det.serving.detections import dict_to_instances
    from eccentric_det.serving.config import get_serving_cfg

    from .test_serving import OPTS, TOKEN, Server

    model = load_model(get_eccentric_cfg(CONFIG, ["MODEL.DEVICE", "cpu", *OPTS])).eval()  # as the server runs
    server = Server("checkpoints/fashion_det/adaptive_ecc_vr.pth", str(tmp_path / "server.log"), config=CONFIG)
    server.start()
    try:
        client = edge_client(get_serving_cfg(CONFIG, "edge", "", [*OPTS, "SERVING.TOKEN", TOKEN]),
                            server.url)
        bgr = inp["image"].numpy().transpose(1, 2, 0).copy()
        probs = model.edge_region_answer(model.edge_input(inp)[0], None, (256, 256), (256, 256))[1]
        client.edge.model.threshold = model.threshold = float(np.sort(probs.reshape(-1).numpy())[-2])
        result, expected = client(bgr), model([inp])[0]
        assert result.source == "cloud" and result.bytes_sent == expected["eccentric"]["bytes"]
        assert 0 < expected["eccentric"]["tiles"] < 64
        got, want = dict_to_instances(result.detections), expected["instances"]
        assert len(got) == len(want)
        assert torch.allclose(got.scores, want.scores, atol=1e-5)
        assert torch.allclose(got.pred_boxes.tensor, want.pred_boxes.tensor, atol=1e-3)
        client.close()
    finally:
        server.stop()


def test_crafted_region_payloads_are_refused_or_decoded_never_crash(model, inp):
    """Masks with any bits and sizes, strings of any length within and beyond their bounds, with valid CRCs: the
    cloud answers or raises PayloadError."""
    import random

    from eccentric_det.codec import Payload

    model.threshold = 0.0
    legit = model.edge_step([inp])[0].payload
    rng = random.Random(0)
    outcomes = {"answered": 0, "refused": 0}
    for case in range(300):
        grid = (rng.choice([1, 2, 8, 9]), rng.choice([1, 3, 8]))
        size = (grid[0] * 32 - rng.randint(0, 31), grid[1] * 32 - rng.randint(0, 31))
        n = grid[0] * grid[1]
        mask = np.array([rng.random() < rng.choice([0.1, 0.5, 0.9]) for _ in range(n)]).reshape(grid)
        mask.flat[rng.randrange(n)] = True
        field = encode_tiles(mask, 4)
        if case % 5 == 0:  # a mask of the wrong length, tile size or padding
            field = rng.choice([field[:-1], field + b"\0", bytes([8]) + field[1:], field[:-1] + b"\xff"])
        strings = [rng.randbytes(rng.choice([4, 8, 12, 64, 400, 4096])) for _ in range(2)]
        if case % 3 == 0:
            strings = list(legit.strings)
        p = Payload(legit.kind, legit.fingerprint, size, size, strings, {**legit.fields, FIELD_TILES: field})
        try:
            model.cloud([p.to_bytes()])
            outcomes["answered"] += 1
        except PayloadError:
            outcomes["refused"] += 1
    assert outcomes["refused"] > 200


def test_scaled_proposals_scale_and_restore(model):
    from eccentric_det.modeling.meta_arch.regions import scaled_proposals

    rpn = model.proposal_generator
    before = rpn.pre_nms_topk[False], rpn.post_nms_topk[False]
    with scaled_proposals(rpn, 0.25):
        assert (rpn.pre_nms_topk[False], rpn.post_nms_topk[False]) == tuple(-(-n // 4) for n in before)
    with scaled_proposals(rpn, 3.0):  # never more than the whole image's
        assert (rpn.pre_nms_topk[False], rpn.post_nms_topk[False]) == before
    assert (rpn.pre_nms_topk[False], rpn.post_nms_topk[False]) == before


def test_found_objects_by_class_and_iou():
    from detectron2.structures import Boxes, Instances

    from eccentric_det.calibration import found

    det = Instances((100, 100), pred_boxes=Boxes(torch.tensor([[0, 0, 10, 10], [50, 50, 70, 70.]])),
                    scores=torch.tensor([0.9, 0.3]), pred_classes=torch.tensor([1, 2]))
    gt = torch.tensor([[0, 0, 10, 11], [50, 50, 70, 70], [0, 0, 10, 10.]])
    assert found(det, gt, torch.tensor([1, 2, 3])).tolist() == [True, False, False]  # score 0.3 < 0.5; class 3


def test_region_gate_labels_the_tiles_where_the_cloud_finds_more(model, tmp_path):
    """collect_region_data over a registered COCO set whose ground truth is what the cloud finds: a tile needs the
    cloud exactly where it holds the centre of such an object that the edge misses; the recall-boosted fit then
    installs a gate that sends those tiles."""
    import json

    import cv2
    from detectron2.data import DatasetCatalog, DatasetMapper

    from eccentric_det.calibration import calibrate_offload_gate, collect_region_data, found

    rng = np.random.RandomState(5)
    (tmp_path / "images").mkdir()
    images, anns, expected = [], [], 0
    model.policy = "dynamic"
    for i in range(4):
        img = np.full((256, 256, 3), 190, np.uint8)
        for _ in range(8):
            y, x = rng.randint(0, 200, 2)
            img[y:y + 48, x:x + 36] = rng.randint(0, 255, (48, 36, 3))
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), img)
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": 256, "width": 256})
    categories = [{"id": k + 1, "name": f"c{k}"} for k in range(10)]
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": images, "annotations": [], "categories": categories}))
    cfg = get_eccentric_cfg(CONFIG, ["MODEL.DEVICE", "cpu", "DATASETS.REGISTER", str([["regions_tmp", "coco", str(gt),
                                                                                       str(tmp_path / "images")]])])
    mapper = DatasetMapper(cfg, is_train=False)
    for record in DatasetCatalog.get("regions_tmp"):
        inp = mapper(dict(record))
        cloud = model.cloud([model.edge([inp])[0]])[0]["instances"]
        cloud = cloud[cloud.scores >= 0.5]
        edge = model.edge_step([inp])[0].answer
        for box, k in zip(cloud.pred_boxes.tensor.tolist(), cloud.pred_classes.tolist()):
            x0, y0, x1, y1 = box
            anns.append({"id": len(anns) + 1, "image_id": record["image_id"], "bbox": [x0, y0, x1 - x0, y1 - y0],
                         "area": (x1 - x0) * (y1 - y0), "iscrowd": 0, "category_id": k + 1})
        boxes = cloud.pred_boxes.tensor
        missed = ~torch.from_numpy(found(edge, boxes, cloud.pred_classes))
        expected += len({tuple(t) for t in zip(*centre_tiles(boxes[missed].numpy(), 32, (8, 8)))})
    gt.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    DatasetCatalog.remove("regions_tmp")
    cfg = get_eccentric_cfg(CONFIG, ["MODEL.DEVICE", "cpu", "DATASETS.REGISTER", str([["regions_tmp", "coco", str(gt),
                                                                                       str(tmp_path / "images")]])])
    stats, labels = collect_region_data(cfg, model, "regions_tmp")
    assert stats.shape == (4 * 64, len(TILE_STAT_NAMES)) and 0 < labels.sum() == expected
    gate = model.region_gate.state_dict()
    try:
        fit = calibrate_offload_gate(cfg, model, "regions_tmp", recall_target=1.0, regions=True)
        assert fit["recall"] == 1.0 and (model.region_gate(stats).numpy() >= fit["threshold"])[labels].all()
    finally:
        model.region_gate.load_state_dict(gate)


def test_demo_shades_and_logs_the_tiles_sent(inp, tmp_path):
    from eccentric_det.demo.predictor import EccentricPredictor, RunLog, draw_frame

    predictor = EccentricPredictor(get_eccentric_cfg(CONFIG, ["MODEL.DEVICE", "cpu"]), offload_threshold=0.5)
    predictor.model.policy = "dynamic"
    bgr = inp["image"].numpy().transpose(1, 2, 0).copy()
    result = predictor(bgr)
    assert result.offloaded and result.tiles and all((x1 - x0, y1 - y0) == (32, 32) for x0, y0, x1, y1 in result.tiles)
    log = RunLog(str(tmp_path / "log.jsonl"))
    log.add(result, predictor)
    log.close()
    vis = draw_frame(bgr, result, log, predictor)
    x0, y0, x1, y1 = result.tiles[0]
    assert (vis[y0 + 10:y1 - 10, x0 + 10:x1 - 10] != bgr[y0 + 10:y1 - 10, x0 + 10:x1 - 10]).any()
    assert "tiles" in (tmp_path / "log.jsonl").read_text()
