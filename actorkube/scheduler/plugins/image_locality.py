"""ImageLocality: prefer nodes that already have the pod's container images.

Rules (Kubernetes' imagelocality plugin):

- A node's raw score is the sum, over the pod's init and app containers whose image
  the node has, of the image's size times the share of all nodes that have it (an
  image on one node of many counts little: that would herd pods onto it).
- The sum is clamped to [23 MiB, 1000 MiB x containers] and scaled to 0-100.
- Image names are compared with the ``:latest`` tag they imply.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .._framework import MAX_NODE_SCORE, SKIP, SUCCESS, CycleState, Status
from .._nodeinfo import NodeInfo, normalized_image

MB = 1024 * 1024
MIN_THRESHOLD = 23 * MB
MAX_CONTAINER_THRESHOLD = 1000 * MB


def _images(pod: Mapping[str, Any]) -> list[str]:
    spec = pod.get("spec") or {}
    containers = (*(spec.get("initContainers") or ()), *(spec.get("containers") or ()))
    return [normalized_image(c.get("image") or "") for c in containers]


class ImageLocality:
    name = "ImageLocality"

    def pre_score(self, state: CycleState, pod: Mapping[str, Any], table, rows) -> Status:
        images = _images(pod)
        spread = {i: table.image_nodes.get(i, 0) / len(table) for i in images}
        state[self.name] = (images, spread)
        return SUCCESS if any(spread.values()) else SKIP  # no node has any: all score 0

    def score(self, state: CycleState, pod: Mapping[str, Any], node: NodeInfo) -> int:
        images, spread = state[self.name]
        total = 0
        for image in images:
            size = node.images.get(image)
            if size is not None:
                total += int(size * spread[image])
        ceiling = MAX_CONTAINER_THRESHOLD * len(images)
        total = min(max(total, MIN_THRESHOLD), ceiling)
        return MAX_NODE_SCORE * (total - MIN_THRESHOLD) // (ceiling - MIN_THRESHOLD)

    def score_many(self, state: CycleState, pod: Mapping[str, Any], table, rows) -> np.ndarray:
        # Each image's size on every node is a column the table keeps (recomputed only
        # for the nodes that changed); the spreads change whenever a node gets one of
        # the images, so they are applied here, to the rows asked.
        images, spread = state[self.name]
        infos = table.infos
        total = np.zeros(len(rows), dtype=np.int64)
        for image in images:

            def one(i: int, image: str = image) -> int:
                return infos[i].images.get(image, 0)

            def many(rows: np.ndarray, image: str = image) -> np.ndarray:
                return np.array([one(i, image) for i in rows.tolist()], dtype=np.int64)

            sizes = table.derived((self.name, image), many, one, np.int64)[rows]
            # int(size * spread) of each node that has the image (0 for the others).
            total += (sizes * spread[image]).astype(np.int64)
        ceiling = MAX_CONTAINER_THRESHOLD * len(images)
        total = np.minimum(np.maximum(total, MIN_THRESHOLD), ceiling)
        return MAX_NODE_SCORE * (total - MIN_THRESHOLD) // (ceiling - MIN_THRESHOLD)
