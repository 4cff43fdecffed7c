"""Proposal files: Detectron2's format, written atomically, read without running code."""

import os
import pickle

import numpy as np
import pytest
from detectron2.data import load_proposals_into_dataset

from resnext_det.checkpoint import UnsafePickleError
from resnext_det.reproduction.data import (
    attach_proposals,
    load_proposal_file,
    missing_image_ids,
    write_proposal_file,
)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _records(ids):
    return [{"image_id": i, "file_name": f"{i}.jpg"} for i in ids]


def test_written_file_is_what_detectron2_reads(tmp_path):
    path = tmp_path / "split.pkl"
    boxes = [np.array([[0, 0, 5, 5], [1, 1, 9, 9]]), np.array([[2, 2, 4, 4]])]
    logits = [np.array([0.1, 0.9]), np.array([0.5])]
    write_proposal_file(path, [7, 8], boxes, logits)
    assert not list(tmp_path.glob("*.partial"))

    ours = attach_proposals(_records([8, 7]), path)
    theirs = load_proposals_into_dataset(_records([8, 7]), str(path))
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a["proposal_boxes"], b["proposal_boxes"])
        np.testing.assert_array_equal(
            a["proposal_objectness_logits"], b["proposal_objectness_logits"]
        )
        assert a["proposal_bbox_mode"] == b["proposal_bbox_mode"]
    # Best proposal first, as the mapper keeps the top k.
    np.testing.assert_array_equal(ours[1]["proposal_boxes"][0], [1, 1, 9, 9])
    assert missing_image_ids(path, [7, 8, 9]) == [9]
    assert missing_image_ids(tmp_path / "absent.pkl", [7]) == [7]


def test_a_file_missing_images_names_them(tmp_path):
    path = tmp_path / "split.pkl"
    write_proposal_file(path, [1], [np.zeros((1, 4))], [np.zeros(1)])
    with pytest.raises(ValueError, match=r"no proposals for 2 of 3 images \(image_id \[2, 3\]"):
        attach_proposals(_records([1, 2, 3]), path)


def test_crafted_proposal_file_is_refused_and_does_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    data = {"ids": [1], "boxes": [_Exploit(marker)], "objectness_logits": [np.zeros(1)]}
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(UnsafePickleError, match="refusing to load"):
        load_proposal_file(path)
    assert not marker.exists()


def test_malformed_files_get_one_line_errors(tmp_path):
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps({"ids": [1, 2], "boxes": [np.zeros((1, 4))]}))
    with pytest.raises(ValueError, match=r"lacks the keys \['objectness_logits'\]"):
        load_proposal_file(path)
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(ValueError, match="holds a list; expected a dict of proposals"):
        load_proposal_file(path)
    with pytest.raises(ValueError, match="expected one of each per image"):
        write_proposal_file(path, [1, 2], [np.zeros((1, 4))], [np.zeros(1)])
