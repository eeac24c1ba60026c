"""SplitModel: the edge step, its decision, payloads and the cloud's batched decoding, for any task.

A task model (EccentricRCNN, SplitTimmClassifier) mixes it in and provides:

* attributes ``offload_mode``, ``policy``, ``threshold``, ``payload_limits``, ``image_codec`` (name, quality)
  and ``codec`` (features mode);
* ``split_parts()`` (see :mod:`.path`), ``has_edge()`` and ``has_cloud()``;
* ``edge_input(inp) -> (x, image_size, output_size, image)``: the normalised network input [1, C, H, W] of one
  input, the size the network sees, the size results are given at, and the 0-255 [C, H, W] image;
* ``edge_answer(x, extra, image_size, output_size) -> (answer, score)``: the edge's own result and its "needs the cloud"
  score (called unless the policy is "always");
* ``image_channels`` and ``rgb`` (the channel order of images);
* ``feature_geometry() -> dict``: ``stride``/``size_divisibility`` or ``feature_hw`` of :class:`PayloadSpec`;
* ``cloud_tail_batch(x_hat, payloads)`` and ``cloud_image_batch(images, payloads)``: the cloud's raw output
  for a batch of same-shape payloads, from the decoded feature or from the decoded images (HxWxC uint8, BGR);
  ``cloud_results(raw, payloads, ms)``: the per-payload results (``ms``: cloud time per payload, decoding
  included).

Region-level Dynamic ECC (features mode, ``region_tile`` > 0, policy "dynamic") also needs
``edge_region_answer(x, extra, image_size, output_size) -> (answer, tile probabilities [rows, cols])`` (the grid of
:func:`~eccentric_det.codec.tiles.tile_grid` over the latent)
(the tiles at least ``threshold``, grown by ``region_dilate`` tiles, are sent) and ``cloud_regions(y_hat, tiles, payload) -> result`` (the cloud on the decoded latent of one region payload).
"""
import time
from typing import List

import numpy as np
import torch

from ..codec import (FIELD_TILES, KIND_FEATURES, KIND_IMAGE, CodedFeature, Payload, PayloadError, PayloadSpec,
                     parse_payloads)
from ..codec.tiles import decode_tiles, encode_tiles, region_cells
from .decision import EdgeDecision
from .frame import EdgeFrame
from .image_codecs import decode_image, encode_image, image_fingerprint, tensor_to_hwc


class SplitModel:
    """Task-neutral edge/cloud machinery (see the module docstring)."""

    _region_tile = 0  # latent cells a side of region payloads' tiles; a task adapter that offloads regions sets it

    def fingerprint(self):
        """Bytes shared by the edge and cloud halves of one trained model (an image codec's name in image mode)."""
        if self.offload_mode == "image":
            return image_fingerprint(self.image_codec[0])
        return self.codec.fingerprint()

    def payload_spec(self) -> PayloadSpec:
        """What this model's cloud accepts (checked before any decoding)."""
        if self.offload_mode == "image":
            return PayloadSpec(self.fingerprint(), KIND_IMAGE, self.payload_limits)
        tile = self.region_tile
        fields = self.codec.payload_fields() + ((FIELD_TILES,) if tile else ())
        return PayloadSpec(self.fingerprint(), KIND_FEATURES, self.payload_limits, fields, dict(self.codec.config),
                           **self.feature_geometry(), tile=tile)

    @property
    def region_tile(self):
        """Latent cells a side of a region payload's tiles (0: whole latents only)."""
        return self._region_tile if self.offload_mode == "features" else 0

    def latent_stride(self):
        """Input pixels per latent cell (the split's stride times the codec's downsampling)."""
        return self.feature_geometry()["stride"] * self.codec.config["downsample"]

    @property
    def region_dilate(self):
        """Tiles of context sent around each tile the region gate selects."""
        return getattr(self, "_region_dilate", 0)

    # ------------------------------------------------------------------ edge
    @torch.no_grad()
    def edge_step(self, inputs, force_offload=False) -> List[EdgeDecision]:
        """Run the edge on each input on its own (as a device would): its own answer, the offload
        decision, and the payload of each input it sends."""
        return [f.decision(force_offload) for f in self.edge_frames(inputs, force_offload)]

    def edge(self, inputs) -> List[Payload]:
        """The payload of every input (as if every one were offloaded)."""
        return [d.payload for d in self.edge_step(inputs, force_offload=True)]

    @torch.no_grad()
    def edge_frames(self, inputs, force_offload=False) -> List[EdgeFrame]:
        """The edge's analysis of each input before it decides (:class:`~eccentric_det.split.frame.EdgeFrame`): its
        own answer and score (or tile probabilities), and a coder of its latents at any rate and in any tiles
        (``force_offload``: the image-level answer, as :meth:`edge_step` gives it when forced)."""
        if not self.has_edge():
            raise RuntimeError("this is a cloud-half model (MODEL.ECCENTRIC.HALF 'cloud'): it has no edge side")
        return [self._edge_frame(inp, force_offload) for inp in inputs]

    def _edge_frame(self, inp, force_offload):
        t0 = time.perf_counter()
        x, image_size, output_size, image = self.edge_input(inp)
        feature = extra = None
        if self.offload_mode == "features":
            feature, extra = self.split_parts()[0](x)
        probs = None
        if self.region_tile and self.policy == "dynamic" and not force_offload:
            answer, probs = self.edge_region_answer(x, extra, image_size, output_size)
            score = float(probs.max())
            probs = np.asarray(probs)
        else:
            answer, score = (None, 1.0) if self.policy == "always" else self.edge_answer(x, extra, image_size,
                                                                                             output_size)
        memo = {}

        def latents():
            if "latents" not in memo:
                memo["latents"] = self.codec.latents(feature)
            return memo["latents"]

        def fingerprint():
            if "fingerprint" not in memo:
                memo["fingerprint"] = self.fingerprint()
            return memo["fingerprint"]

        def coder(rate, tiles):
            with torch.no_grad():
                if feature is None:
                    data = encode_image(tensor_to_hwc(image, self.rgb), *self.image_codec)
                    return Payload(KIND_IMAGE, fingerprint(), image_size, output_size, [data])
                regions = None
                if tiles is not None:
                    latent_hw = self.codec.latent_shape(tuple(feature.shape[-2:]))
                    regions = [(*region_cells(tiles, self.region_tile, latent_hw),
                                encode_tiles(tiles, self.region_tile))]
                coded = self.codec.code(latents(), rate, regions)[0]
                return Payload(KIND_FEATURES, fingerprint(), image_size, output_size, coded.strings, coded.fields)

        def signature():
            with torch.no_grad():
                if feature is None:  # image mode: the network input, pooled to 1/16
                    return torch.nn.functional.avg_pool2d(x.float(), 16, ceil_mode=True)[0]
                return latents().y[0]

        variable = feature is not None and self.codec is not None and self.codec.rate_log_gains() is not None
        return EdgeFrame(answer, score, image_size, output_size, self.policy, self.threshold, coder, signature,
                         rate_levels=self.codec.config["rate_levels"] if variable else 1,
                         rate=self.codec.rate if variable else None, tile_probs=probs,
                         tile_px=self.region_tile * self.latent_stride() if probs is not None else 0,
                         tile_cells=self.region_tile if probs is not None else 0, dilate=self.region_dilate,
                         ms=(time.perf_counter() - t0) * 1e3)

    # ------------------------------------------------------------------ cloud
    @torch.no_grad()
    def cloud(self, payloads, key=None) -> list:
        """The cloud's result for each payload (``Payload`` or bytes, authenticated with the fleet ``key`` when
        given), in order; same-shape payloads run as one batch. Every payload is checked against
        :meth:`payload_spec` before any decoding; raises :class:`PayloadError` for one this model cannot have
        produced."""
        if not self.has_cloud():
            raise RuntimeError("this model has no cloud side (MODEL.ECCENTRIC.HALF 'edge', or OFFLOAD.POLICY "
                               "'never' without a cloud model)")
        parsed, shapes, groups = parse_payloads(payloads, self.payload_spec(), key)
        results = [None] * len(parsed)
        for idx in groups:
            t0, batch = time.perf_counter(), [parsed[i] for i in idx]
            if FIELD_TILES in batch[0].fields:  # region payloads: the cloud runs on each one's regions
                try:
                    y_hat = self.codec.decompress_latent(self.coded_features(batch, shapes[idx[0]]))
                except (ValueError, RuntimeError) as e:
                    raise PayloadError(f"payload could not be entropy-decoded: {e}") from e
                for i, p, y in zip(idx, batch, y_hat):
                    results[i] = self.cloud_regions(y[None], decode_tiles(p.fields[FIELD_TILES], y.shape[-2:],
                                                                          self.region_tile), p)
                    results[i]["cloud_ms"] = (time.perf_counter() - t0) * 1e3
                    t0 = time.perf_counter()
                continue
            if batch[0].kind == KIND_FEATURES:
                raw = self.cloud_tail_batch(self.decode_features(batch, shapes[idx[0]]), batch)
            else:
                images = [decode_image(p.strings[0], p.image_size, self.image_codec[0], self.image_channels)
                          for p in batch]
                raw = self.cloud_image_batch(images, batch)
            ms = (time.perf_counter() - t0) * 1e3 / len(batch)
            for i, r in zip(idx, self.cloud_results(raw, batch, ms)):
                results[i] = r
        return results

    def coded_features(self, payloads, feature_hw):
        """The :class:`CodedFeature` of each checked, same-shape feature payload."""
        latent_hw = self.codec.latent_shape(feature_hw)
        return [CodedFeature(p.strings, latent_hw, feature_hw, p.fields) for p in payloads]

    def decode_features(self, payloads, feature_hw):
        """The decoded split feature [N, C, h, w] of checked, same-shape feature payloads."""
        try:
            return self.codec.decompress(self.coded_features(payloads, feature_hw))
        except (ValueError, RuntimeError) as e:
            raise PayloadError(f"payload could not be entropy-decoded: {e}") from e
