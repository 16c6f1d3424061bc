from collections import Counter

from training.data.splits import assign_splits


def test_splits_are_80_10_10_per_source_deterministic_and_ood_whole():
    songs = [{"source": "a", "song_id": f"{i:04d}"} for i in range(1000)]
    songs += [{"source": "b", "song_id": f"{i:04d}"} for i in range(200)]
    songs += [{"source": "openewld", "song_id": str(i)} for i in range(50)]
    songs += [{"source": "hooktheory", "song_id": str(i), "official_split": "valid"} for i in range(5)]
    first = assign_splits(songs)
    assert first == assign_splits(list(songs))
    assert assign_splits(list(reversed(songs))) == list(reversed(first))  # order of discovery does not matter
    a = Counter(s for s, song in zip(first, songs) if song["source"] == "a")
    assert a == {"train": 800, "valid": 100, "test": 100}
    b = Counter(s for s, song in zip(first, songs) if song["source"] == "b")
    assert b == {"train": 160, "valid": 20, "test": 20}
    assert all(s == "ood" for s, song in zip(first, songs) if song["source"] == "openewld")
    assert all(s == "valid" for s, song in zip(first, songs) if song["source"] == "hooktheory")
    # a different seed gives a different assignment
    assert assign_splits(songs, seed=7) != first
