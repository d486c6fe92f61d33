"""The built-in toy tasks in lstm_np.tasks: registry, correct targets, deterministic disjoint splits."""
import calendar
import datetime
import re

import numpy as np
import pytest

from lstm_np.tasks import DEFAULT_SIZES, TASKS, Sizes, example, make_splits, number_to_words

SMALL = dict(n_train=300, n_valid=50, n_test=50)


def test_registry_has_exactly_the_documented_tasks():
    assert set(TASKS) == {"copy", "reverse", "sort", "addition", "dates", "number-words"}
    assert DEFAULT_SIZES == Sizes(20000, 500, 1000)
    for name, task in TASKS.items():
        assert task.name == name and task.description and task.tokens == "char"
        src, tgt = example(name)
        assert isinstance(src, str) and isinstance(tgt, str) and src and tgt
        assert example(name) == (src, tgt)


def test_default_split_sizes_per_task():
    expected = {name: DEFAULT_SIZES for name in TASKS}
    expected["addition"] = Sizes(120000, 500, 1000)      # 20000 pairs overfit within a 60 s run
    expected["number-words"] = Sizes(8000, 500, 1000)    # only 10000 distinct sources exist
    assert {name: task.sizes for name, task in TASKS.items()} == expected
    splits = make_splits("addition")
    assert {k: len(v) for k, v in splits.items()} == {"train": 120000, "valid": 500, "test": 1000}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_splits_are_deterministic_per_seed_and_differ_across_seeds(name):
    first = make_splits(name, **SMALL, seed=7)
    assert first == make_splits(name, **SMALL, seed=7)
    assert first != make_splits(name, **SMALL, seed=8)
    assert {k: len(v) for k, v in first.items()} == {"train": 300, "valid": 50, "test": 50}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_split_sources_are_unique_and_disjoint_across_splits(name):
    splits = make_splits(name, **SMALL, seed=0)
    sources = [src for split in splits.values() for src, _ in split]
    assert len(sources) == len(set(sources))


@pytest.mark.parametrize("name", sorted(TASKS))
def test_default_sizes_generate_disjoint_splits(name):
    splits = make_splits(name, seed=0)
    assert tuple(len(splits[k]) for k in ("train", "valid", "test")) == TASKS[name].sizes
    assert len({src for split in splits.values() for src, _ in split}) == sum(TASKS[name].sizes)


def test_string_task_targets_are_copy_reverse_and_sort_of_letters_a_to_j():
    for name, expected in (("copy", lambda s: s), ("reverse", lambda s: s[::-1]),
                           ("sort", lambda s: "".join(sorted(s)))):
        for src, tgt in make_splits(name, **SMALL, seed=1)["train"]:
            assert re.fullmatch(r"[a-j]{1,10}", src), src
            assert tgt == expected(src), (name, src, tgt)


def test_addition_draws_short_operands_as_often_as_long_ones():
    """Edge cases a user types first ("1+1", "0+0", "99+1") are common in training, not one pair in 10^4."""
    train = make_splits("addition", n_train=20000, n_valid=0, n_test=0, seed=0)["train"]
    operands = [int(x) for src, _ in train for x in src.split("+")]
    digits = np.array([len(str(x)) for x in operands])
    share = [float(np.mean(digits == d)) for d in (1, 2, 3)]
    # drawn 1/3 each; the 10 one-digit values run out of distinct pairs first (uniform values would give 1%, 9%, 90%)
    assert min(share) > 0.15, f"share of 1-, 2-, 3-digit operands: {share}"
    sources = {src for src, _ in train}
    assert sum(f"{a}+{b}" in sources for a in range(10) for b in range(10)) >= 90, "most 1-digit pairs are trained"
    assert {"0+0", "1+1"} & sources, "the very first sums a user tries are among the training pairs"


def test_addition_targets_are_the_decimal_sums():
    for src, tgt in make_splits("addition", **SMALL, seed=2)["train"]:
        assert re.fullmatch(r"(0|[1-9]\d{0,2})\+(0|[1-9]\d{0,2})", src), src
        a, b = map(int, src.split("+"))
        assert tgt == str(a + b)


# Independent reference: parse each source back with strptime (English names in the C locale).
STRPTIME_FORMATS = ("%d %B %Y", "%B %d %Y", "%b %d %Y", "%d %b %Y", "%d-%b-%Y", "%A %B %d %Y",
                    "%a %d %b %Y", "%A %d %B %Y", "%m/%d/%Y")
WEEKDAY_NAMES = {name.lower() for name in (*calendar.day_name, *calendar.day_abbr)}


def parse_date(src):
    cleaned = re.sub(r"(\d)(st|nd|rd|th)\b", r"\1", src).replace(",", "").replace(".", "")
    cleaned = re.sub(r"^the (\d+) of ", r"\1 ", cleaned)
    for fmt in STRPTIME_FORMATS:
        try:
            return datetime.datetime.strptime(cleaned, fmt).date()
        except ValueError:
            pass
    raise AssertionError(f"date source {src!r} matches no known format")


def test_dates_targets_are_the_iso_form_of_the_source_date():
    splits = make_splits("dates", n_train=3000, n_valid=0, n_test=0, seed=3)
    numeric = 0
    for src, tgt in splits["train"]:
        target = datetime.date.fromisoformat(tgt)
        assert datetime.date(1950, 1, 1) <= target <= datetime.date(2049, 12, 31)
        assert parse_date(src) == target, (src, tgt)
        first_word = src.split()[0].rstrip(",").lower()
        if first_word in WEEKDAY_NAMES:
            assert first_word[:3] == calendar.day_abbr[target.weekday()].lower(), (src, tgt)
        if m := re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", src):
            numeric += 1
            assert (int(m[1]), int(m[2]), int(m[3])) == (target.month, target.day, target.year)
    assert numeric > 100, "numeric MM/DD/YYYY format never drawn"


def format_shape(src):
    """'Saturday, April 3, 2021' → 'Aa, Aa 9, 9': digits and words replaced by their kind and case."""
    shape = re.sub(r"\d+", "9", src)
    shape = re.sub(r"[A-Z]{2,}", "AA", shape)
    shape = re.sub(r"[A-Z][a-z]+", "Aa", shape)
    return re.sub(r"[a-z]+", "a", shape)


def test_dates_use_at_least_ten_distinct_formats():
    splits = make_splits("dates", n_train=2000, n_valid=0, n_test=0, seed=4)
    shapes = {format_shape(src) for src, _ in splits["train"]}
    assert len(shapes) >= 10, shapes


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (20, "twenty"), (40, "forty"), (99, "ninety-nine"),
    (100, "one hundred"), (105, "one hundred five"), (999, "nine hundred ninety-nine"),
    (1000, "one thousand"), (1005, "one thousand five"), (1234, "one thousand two hundred thirty-four"),
    (9999, "nine thousand nine hundred ninety-nine"),
])
def test_number_to_words_spot_checks(n, words):
    assert number_to_words(n) == words


def test_number_words_task_pairs_an_integer_with_its_words():
    for src, tgt in make_splits("number-words", **SMALL, seed=5)["train"]:
        assert 0 <= int(src) <= 9999 and str(int(src)) == src
        assert tgt == number_to_words(int(src))
    with pytest.raises(ValueError, match="n must be"):
        number_to_words(-1)


def test_unknown_task_name_raises_listing_known_tasks():
    with pytest.raises(ValueError, match="unknown task 'copyy'.*number-words"):
        make_splits("copyy", **SMALL, seed=0)
    with pytest.raises(ValueError, match="unknown task"):
        example("nope")


def test_asking_for_more_sources_than_a_task_has_raises():
    with pytest.raises(ValueError, match="distinct sources"):
        make_splits("number-words", n_train=10001, n_valid=0, n_test=0, seed=0)
    with pytest.raises(ValueError, match="n_valid"):
        make_splits("copy", n_train=1, n_valid=-1, n_test=0, seed=0)
