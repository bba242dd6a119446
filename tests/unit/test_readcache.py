"""The bounds of the in-process cache of reads keyed by digest (pure data, no I/O)."""

from __future__ import annotations

from collections.abc import Callable

from modelreg.digest import sha256_digest
from modelreg.oci import IMAGE_MANIFEST, Descriptor, Manifest, empty_config_descriptor
from modelreg.readcache import ReadCache


def _manifest(n: int) -> tuple[Descriptor, Manifest]:
    manifest = Manifest(config=empty_config_descriptor(), layers=(), annotations={"n": str(n)})
    data = manifest.to_bytes()
    return Descriptor(IMAGE_MANIFEST, sha256_digest(data), len(data)), manifest


def test_manifests_are_dropped_least_recently_used_first_past_the_byte_bound() -> None:
    entries = [_manifest(n) for n in range(4)]
    size = entries[0][0].size
    cache = ReadCache(max_bytes=3 * size)
    for descriptor, manifest in entries[:3]:
        cache.remember_manifest(descriptor, manifest)
    assert cache.manifest(entries[0][0].digest) == entries[0]  # now the most recent
    cache.remember_manifest(*entries[3])
    assert cache.manifest(entries[1][0].digest) is None
    assert cache.knows(d.digest for d, _ in entries) == 3


def test_a_manifest_over_the_bound_is_not_kept() -> None:
    descriptor, manifest = _manifest(0)
    cache = ReadCache(max_bytes=descriptor.size - 1)
    cache.remember_manifest(descriptor, manifest)
    assert cache.knows([descriptor.digest]) == 0


def test_push_times_are_read_once_and_empty_answers_are_not_kept() -> None:
    cache = ReadCache(max_times=2)
    reads: list[str] = []

    def read(value: str) -> Callable[[], str]:
        def answer() -> str:
            reads.append(value)
            return value

        return answer

    key = ("store", "repo", "sha256:" + "a" * 64, 1)
    assert cache.push_time(key, read("")) == ""
    assert cache.push_time(key, read("2026-01-01T00:00:00Z")) == "2026-01-01T00:00:00Z"
    assert cache.push_time(key, read("later")) == "2026-01-01T00:00:00Z"
    assert reads == ["", "2026-01-01T00:00:00Z"]
    cache.forget_push_time(key)
    assert cache.push_time(key, read("again")) == "again"
    for n in (2, 3):
        cache.push_time((*key[:3], n), read(f"t{n}"))
    assert cache.push_time(key, read("evicted")) == "evicted"  # bound of two
