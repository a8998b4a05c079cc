"""cellbook.splits: stratified 2:1 splits over seeds, group (donor) splits, and label errors."""
import numpy as np
import pytest

from cellbook import splits


def _labels():
    return np.array(["a"] * 30 + ["b"] * 15 + ["c"] * 6)


def test_stratified_split_is_two_to_one_and_stratified():
    y = _labels()
    tr, te = splits.stratified_split(y, seed=0)
    assert len(tr) == 34 and len(te) == 17
    assert len(np.intersect1d(tr, te)) == 0 and len(np.union1d(tr, te)) == len(y)
    assert (y[te] == "a").sum() == 10 and (y[te] == "b").sum() == 5 and (y[te] == "c").sum() == 2


def test_split_is_seeded():
    y = _labels()
    a, b = splits.stratified_split(y, seed=1), splits.stratified_split(y, seed=1)
    c = splits.stratified_split(y, seed=2)
    assert np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])
    reps = splits.repeated_splits(y, seeds=[0, 1, 2])
    assert [r[0] for r in reps] == [0, 1, 2]


def test_fewer_than_two_classes():
    with pytest.raises(ValueError, match="fewer than 2 classes"):
        splits.stratified_split(["x"] * 10)


def test_class_with_fewer_cells_than_folds():
    y = np.array(["a"] * 10 + ["b"] * 10 + ["rare"] * 3)
    with pytest.raises(ValueError, match=r"fewer cells than folds.*rare \(3\)"):
        splits.stratified_kfold(y, n_folds=5)
    folds = splits.stratified_kfold(y, n_folds=3)
    assert len(folds) == 3
    assert np.array_equal(np.sort(np.concatenate([te for _, te in folds])), np.arange(len(y)))


def test_missing_labels_are_an_error():
    with pytest.raises(ValueError, match="missing label"):
        splits.check_labels(np.array(["a", None, "b"], dtype=object))


def test_group_split_holds_out_donors_and_unseen_types():
    groups = np.array(["d1"] * 4 + ["d2"] * 4 + ["h1"] * 3)
    y = np.array(["a", "b", "a", "b", "a", "b", "a", "b", "a", "b", "new"])
    tr, te = splits.group_split(groups, ["h1"], y=y)
    assert set(groups[tr]) == {"d1", "d2"} and set(groups[te]) == {"h1"}
    assert "new" not in y[te] and splits.group_split.dropped == {"new": 1}
    with pytest.raises(ValueError, match="not found: zz"):
        splits.group_split(groups, ["zz"])
    with pytest.raises(ValueError, match="no training"):
        splits.group_split(groups, ["d1", "d2", "h1"])


def test_leave_groups_out_never_mixes_a_group():
    groups = np.repeat(["g1", "g2", "g3", "g4"], [5, 4, 3, 2])
    folds = splits.leave_groups_out(groups, n_folds=2)
    for tr, te, held in folds:
        assert not set(groups[tr]) & set(groups[te])
        assert sorted(set(groups[te])) == held
    with pytest.raises(ValueError, match="n_folds"):
        splits.leave_groups_out(groups, n_folds=9)


def test_a_nan_among_text_labels_is_missing_not_a_class():
    """np.asarray(['a', nan]) is text ('nan'): the check looks at the labels as given."""
    with pytest.raises(ValueError, match=r"1 of 3 cells have a missing label"):
        splits.check_missing(["a", float("nan"), "b"])


def test_a_split_too_small_for_every_class_on_each_side_is_a_clear_error():
    with pytest.raises(ValueError, match=r"test_size=0.25 of 4 cells puts 1 in the test set .* 2 classes"):
        splits.stratified_split(["a", "a", "b", "b"], test_size=0.25)
