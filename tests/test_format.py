import json

import numpy as np
import pytest

from shapmix.data.format import (
    DatasetFormatError,
    DatasetWriter,
    load_dataset,
    read_name_list,
    write_dataset,
    write_split,
)


def _arrays(n=6, t=10):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(n, 3, t, 25, 2)).astype(np.float32)
    lengths = np.array([10, 7, 3, 10, 1, 5])[:n]
    labels = np.array([0, 1, 2, 0, 1, 2])[:n]
    names = [f"s{i}" for i in range(n)]
    return data, labels, lengths, names


def test_round_trip_pads_with_zeros_and_memory_maps(tmp_path):
    data, labels, lengths, names = _arrays()
    write_dataset(tmp_path / "d", data, labels, lengths, names, "ntu25", ["a", "b", "c"],
                  splits={"train": ["s0", "s1", "s2"], "test": ["s5", "s3"]}, metadata={"k": 1})
    ds = load_dataset(tmp_path / "d")
    assert isinstance(ds.data, np.memmap)
    for i in range(6):
        np.testing.assert_array_equal(ds.data[i, :, : lengths[i]], data[i, :, : lengths[i]])
        assert not ds.data[i, :, lengths[i]:].any()
    assert ds.names == names and ds.metadata == {"k": 1} and ds.layout.name == "ntu25"
    assert ds.split_indices("test").tolist() == [5, 3]
    assert ds.class_counts("train").tolist() == [1, 1, 1]


def test_a_split_batch_is_the_collated_items_read_in_one_gather(tmp_path):
    import torch
    from torch.utils.data import default_collate

    from shapmix.data.dataset import SkeletonSplit

    data, labels, lengths, names = _arrays()
    write_dataset(tmp_path / "d", data, labels, lengths, names, "ntu25", ["a", "b", "c"],
                  splits={"test": ["s5", "s3", "s1", "s4"]})
    split = SkeletonSplit(load_dataset(tmp_path / "d"), "test")
    items = np.array([2, 0, 2, 3])  # positions in the split, with a repeat
    expected = default_collate([split[i] for i in items])
    batch = split.batch(items)
    for field in ("x", "label", "length", "index"):
        value, reference = getattr(batch, field), getattr(expected, field)
        assert value.dtype == reference.dtype and torch.equal(value, reference), field
    assert batch.index.tolist() == [1, 5, 1, 4]  # rows of the dataset, not positions in the split
    assert torch.equal(split.batch(torch.tensor(items)).x, batch.x)


def test_writer_refuses_incomplete_datasets_and_bad_samples(tmp_path):
    writer = DatasetWriter(tmp_path / "d", 2, (3, 5, 25, 1), "ntu25", ["a"])
    with pytest.raises(ValueError, match="expected"):
        writer.write(0, np.zeros((3, 5, 20, 1), np.float32), 0, "x")
    with pytest.raises(ValueError, match="frames"):
        writer.write(0, np.zeros((3, 6, 25, 1), np.float32), 0, "x")
    writer.write(0, np.ones((3, 5, 25, 1), np.float32), 0, "x")
    with pytest.raises(ValueError, match="never written"):
        writer.close()
    # without meta.json the directory is not a dataset
    with pytest.raises(DatasetFormatError, match="meta.json: missing"):
        load_dataset(tmp_path / "d")


def test_loader_errors_name_the_file(tmp_path):
    data, labels, lengths, names = _arrays()
    root = tmp_path / "d"
    write_dataset(root, data, labels, lengths, names, "ntu25", ["a", "b", "c"])
    meta = json.loads((root / "meta.json").read_text())
    meta["version"] = 99
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetFormatError, match=r"meta.json: expected format"):
        load_dataset(root)
    meta["version"] = 1
    meta["class_names"] = ["a", "b"]  # label 2 is now out of range
    (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetFormatError, match="labels must lie in 0..1"):
        load_dataset(root)


def test_split_with_unknown_names_and_duplicate_lines(tmp_path):
    data, labels, lengths, names = _arrays()
    root = tmp_path / "d"
    write_dataset(root, data, labels, lengths, names, "ntu25", ["a", "b", "c"])
    write_split(root, "lt", ["s0", "nope"])
    with pytest.raises(DatasetFormatError, match=r"split 'lt' names 1 unknown samples"):
        load_dataset(root)
    (root / "splits" / "lt.txt").write_text("s0\ns1\ns0\n")
    with pytest.raises(DatasetFormatError, match=r"lt.txt:3: name 's0' repeats line 1"):
        read_name_list(root / "splits" / "lt.txt")
