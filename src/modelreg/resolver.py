"""The resolver: serving code asks for a stage and gets a verified digest and its files.

    from modelreg import Resolver

    resolver = Resolver(trust=["alice.pub"], cache_dir="/var/cache/models")
    model = resolver.resolve("localhost:5000/ml/fraud", stage="production")
    path = resolver.fetch(model)            # verified files, shared across versions
    for model in resolver.watch("localhost:5000/ml/fraud", interval=5):
        reload(resolver.fetch(model))       # on start and on every verified promotion

Every answer comes from a promotion chain verified against the trust policy;
the last accepted head of each stage is kept on disk in ``$MODELREG_HOME``
(shared with ``modelreg pull/verify`` of ``repo:stage``), so a replayed older
record is refused across restarts and across commands. When the registry cannot be reached the
last verified answer is returned if it is younger than ``max_stale`` (and
marked ``stale``), unless that answer's record has expired; otherwise the error
is raised.

The cache under ``cache_dir`` is content-addressed and safe for several
processes: ``layers/<hex>`` holds each verified, extracted layer (written to a
temporary name, renamed only after its digest checked out), ``models/<hex>``
a model directory assembled from them with hard links. A crash leaves only
temporary names, which nothing trusts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from .digest import VerifyingReader, hex_part, sha256_digest, verify_bytes
from .errors import (
    IntegrityError,
    InvalidInput,
    ModelregError,
    RegistryUnavailable,
    VerificationError,
)
from .localfs import local_writes, writes_below
from .oci import MAX_MANIFEST_BYTES, Manifest
from .policy import TrustPolicy, require_trust, trust_from_options
from .reference import Reference, parse_reference
from .stages.verify import verify_stage
from .store import Stores
from .store.base import Repository
from .timeutil import now_utc, parse_time
from .trust_state import TrustState

if TYPE_CHECKING:  # what only fetch needs loads in fetch: resolving stays a light import
    from .formats.layers import FileLayer
    from .lineage import Lineage
    from .selection import Selection

_TEMP_PREFIX = ".tmp-"
_STALE_TEMP_SECONDS = 3600


@dataclass(frozen=True)
class ResolvedModel:
    """A verified answer: which model a stage holds."""

    repository: str
    stage: str
    digest: str
    version: int | None
    sequence: int
    signers: tuple[str, ...]
    manifest: Manifest = field(repr=False)
    stale: bool = False
    verified_at: float = 0.0

    @property
    def reference(self) -> str:
        """``repo@sha256:…``: what Docker, Kubernetes and ``modelreg pull`` take."""
        return f"{self.repository}@{self.digest}"

    @property
    def lineage(self) -> Lineage:
        from .lineage import from_annotations

        return from_annotations(self.manifest.annotations)

    def to_dict(self) -> dict[str, object]:
        return {
            "repository": self.repository,
            "stage": self.stage,
            "digest": self.digest,
            "reference": self.reference,
            "version": self.version,
            "sequence": self.sequence,
            "signers": list(self.signers),
            "stale": self.stale,
            "verifiedAt": self.verified_at,
        }


class Resolver:
    """Resolves stages to verified digests and fetches their files. Thread-safe."""

    def __init__(
        self,
        trust: Sequence[str | Path] = (),
        *,
        policy: str | Path | TrustPolicy | None = None,
        cache_dir: str | Path | None = None,
        max_stale: timedelta | float = timedelta(hours=1),
        stores: Stores | None = None,
    ) -> None:
        self._stores = stores or Stores()
        if isinstance(policy, TrustPolicy):
            loaded: TrustPolicy | None = policy
        else:
            loaded = trust_from_options(
                [Path(t) for t in trust],
                Path(policy) if policy is not None else None,
                home=self._stores.home,
            )
        self._policy = require_trust(loaded, "a resolver")
        self.cache_dir = Path(cache_dir) if cache_dir else self._stores.home / "cache" / "resolver"
        with local_writes("creating the resolver cache", self.cache_dir):
            for sub in ("blobs", "layers", "models"):
                (self.cache_dir / sub).mkdir(parents=True, exist_ok=True)
        # one client, one memory: the heads pull/verify/lineage accepted are the resolver's too
        self._state = TrustState(self._stores.home / "trust-state.json")
        legacy = self.cache_dir / "trust-state.json"  # where resolvers kept it before
        if legacy.is_file():
            self._state.adopt(legacy)
        self._max_stale = (
            max_stale.total_seconds() if isinstance(max_stale, timedelta) else float(max_stale)
        )
        self._lock = threading.Lock()
        self._repositories: dict[str, Repository] = {}
        self._verified_at: dict[tuple[str, str], tuple[str, float]] = {}  # -> (digest, when)
        self._content_checked: set[tuple[str, str]] = set()  # (digest, policy fingerprint)

    # ----- resolve -------------------------------------------------------------------

    def _repository(self, reference: Reference) -> Repository:
        with self._lock:
            repo = self._repositories.get(reference.name)
            if repo is None:
                repo = self._stores.repository(reference)
                self._repositories[reference.name] = repo
            return repo

    @writes_below("caching a resolved model", lambda self: self.cache_dir)
    def resolve(self, repository: str, stage: str = "production") -> ResolvedModel:
        """The model ``stage`` holds, verified; or the last verified answer when offline."""
        reference = parse_reference(repository).bare()
        repo = self._repository(reference)
        try:
            # the answer is the signed chain's head; a tag one promotion behind it is a
            # promotion between its record and its tag move, not an attack
            verified = verify_stage(repo, stage, self._policy, state=self._state, tag_may_lag=True)
        except RegistryUnavailable as unreachable:
            return self._offline_answer(repo, stage, unreachable)
        manifest = self._manifest(repo, verified.digest)
        verified_at = time.time()
        self._verified_at[(repo.name, stage)] = (verified.digest, verified_at)
        return ResolvedModel(
            repo.name,
            stage,
            verified.digest,
            verified.version,
            verified.sequence,
            verified.signers,
            manifest,
            verified_at=verified_at,
        )

    def _offline_answer(
        self, repo: Repository, stage: str, unreachable: RegistryUnavailable
    ) -> ResolvedModel:
        accepted = self._state.get(
            TrustState.key(
                repo.store_id, repo.path_in_store, stage, self._policy.fingerprint(stage)
            )
        )
        if (
            accepted is not None
            and accepted.expires_at
            and (parse_time(accepted.expires_at) < now_utc())
        ):
            raise VerificationError(
                f"{unreachable.message}; the last verified {repo.name}:{stage} head (record "
                f"{accepted.sequence}) expired at {accepted.expires_at}",
                "an expired head is never served, not even offline: bring the registry back "
                "and promote again to renew the stage",
            ) from None
        manifest = self._cached_manifest(accepted.target) if accepted is not None else None
        if accepted is None or manifest is None:
            raise RegistryUnavailable(
                f"{unreachable.message}; and no verified answer for {repo.name}:{stage} is cached",
                unreachable.hint,
            ) from None
        # this process may have verified it later than the state file says (the file is
        # refreshed at most every REFRESH_EVERY seconds)
        verified_at = accepted.verified_at
        here = self._verified_at.get((repo.name, stage))
        if here is not None and here[0] == accepted.target:
            verified_at = max(verified_at, here[1])
        age = time.time() - verified_at
        if age > self._max_stale:
            raise RegistryUnavailable(
                f"{unreachable.message}; the last verified answer for {repo.name}:{stage} is "
                f"{age:.0f} s old, over max_stale ({self._max_stale:.0f} s)",
                "bring the registry back, or raise max_stale if older answers are acceptable",
            ) from None
        return ResolvedModel(
            repo.name,
            stage,
            accepted.target,
            accepted.version,
            accepted.sequence,
            tuple(accepted.signers),
            manifest,
            stale=True,
            verified_at=verified_at,
        )

    # ----- manifests: immutable, cached by digest --------------------------------------------

    def _blob_path(self, digest: str) -> Path:
        return self.cache_dir / "blobs" / hex_part(digest)

    def _cached_manifest(self, digest: str) -> Manifest | None:
        try:
            data = self._blob_path(digest).read_bytes()
        except FileNotFoundError:
            return None
        verify_bytes(data, digest, f"cached manifest {digest}")
        return Manifest.parse(data)

    def _manifest(self, repo: Repository, digest: str) -> Manifest:
        cached = self._cached_manifest(digest)
        if cached is not None:
            return cached
        _, data = repo.fetch_manifest(digest)
        if len(data) > MAX_MANIFEST_BYTES or sha256_digest(data) != digest:
            raise ModelregError(f"manifest {digest} did not verify")
        _write_atomically(self._blob_path(digest), data)
        return Manifest.parse(data)

    # ----- fetch -----------------------------------------------------------------------

    @writes_below("fetching a model into the resolver cache", lambda self: self.cache_dir)
    def fetch(
        self,
        model: ResolvedModel,
        *,
        signature: str | Path | None = None,
        include: Sequence[str] = (),
        exclude: Sequence[str] = (),
    ) -> Path:
        """A local directory with the model's files, every byte verified.

        Layers already in the cache are not downloaded again, so a new version that
        changes one file downloads one layer; a download cut short (even by a killed
        process) resumes from the bytes it had. ``include``/``exclude`` globs select
        files: only the layers holding wanted files are downloaded. ``signature``
        names a file to write the model's content signature (by a key trusted for the
        stage) to; when the policy requires content signatures for the stage, one must
        cover the files (so the whole model is fetched, never a selection).
        """
        from .selection import Selection

        selection = Selection.of(include, exclude)
        required = self._policy.rule(model.stage).require_content_signature
        if selection is not None and (signature is not None or required):
            raise InvalidInput(
                f"a content signature covers every file of {model.reference}; "
                "it cannot be checked on a selection",
                "fetch without include/exclude (the policy requires content signatures "
                f"for {model.stage})"
                if required
                else "fetch without include/exclude to write the signature",
            )
        target = self._fetch(model, selection)
        checked = (model.digest, self._policy.fingerprint(model.stage))
        if signature is not None or (required and checked not in self._content_checked):
            from .content_signatures import write_signature

            output = Path(signature) if signature is not None else None
            with tempfile.TemporaryDirectory() as scratch:
                write_signature(
                    self._repository(parse_reference(model.repository)),
                    model.digest,
                    target,
                    output or Path(scratch) / "model.sig",
                    self._policy.allowed_keys(model.stage),
                )
            self._content_checked.add(checked)  # the cached files are immutable
        return target

    def _fetch(self, model: ResolvedModel, selection: Selection | None) -> Path:
        from . import formats
        from .selection import check_written, select_layers

        name = hex_part(model.digest)
        if selection is not None:
            name += "-" + sha256_digest(selection.key().encode())[7:23]
        target = self.cache_dir / "models" / name
        if target.is_dir():
            return target
        reference = parse_reference(model.repository)
        repo = self._repository(reference)
        file_layers = formats.file_layers(model.manifest)
        chosen = {
            layer.digest
            for layer in select_layers(
                [f.descriptor for f in file_layers], selection, model.reference
            )
        }
        layers = [self._layer(repo, f) for f in file_layers if f.descriptor.digest in chosen]
        wanted = selection.wants if selection is not None else None
        with _scratch(target.parent) as scratch:
            linked = [
                path for layer_dir in layers for path in _link_tree(layer_dir, scratch, wanted)
            ]
            check_written(linked, selection, model.reference)
            _publish(scratch, target)
        return target

    def _layer(self, repo: Repository, layer: FileLayer) -> Path:
        from .formats.layers import unpack
        from .partial import PARTIAL_DIR, PartialArea

        descriptor = layer.descriptor
        final = self.cache_dir / "layers" / (hex_part(descriptor.digest) + _layout_suffix(layer))
        if final.is_dir():
            return final
        partial = PartialArea(self._stores.home / PARTIAL_DIR)
        with _scratch(final.parent) as scratch:
            with (
                partial.kept_only_for_the_transport(descriptor.digest),
                partial.open_blob(repo, descriptor) as raw,
            ):
                reader = VerifyingReader(
                    raw, descriptor.digest, descriptor.size, f"layer {descriptor.digest}"
                )
                unpack(layer, reader, scratch)
                reader.finish()
            _make_read_only(scratch)
            _publish(scratch, final)
        partial.discard([descriptor.digest])
        return final

    # ----- watch -----------------------------------------------------------------------

    def watch(
        self,
        repository: str,
        stage: str = "production",
        *,
        interval: float = 5.0,
        stop: threading.Event | None = None,
        on_error: Callable[[ModelregError], None] | None = None,
    ) -> Iterator[ResolvedModel]:
        """Yield the stage's model now and again after every verified promotion.

        Errors (an unreachable registry beyond ``max_stale``, a chain that stops
        verifying) are raised, or passed to ``on_error`` while watching goes on
        with the last good model. ``stop`` ends the generator.
        """
        stop = stop or threading.Event()
        current: str | None = None
        while not stop.is_set():
            try:
                model = self.resolve(repository, stage)
            except ModelregError as error:
                if on_error is None:
                    raise
                on_error(error)
            else:
                if model.digest != current:
                    current = model.digest
                    yield model
            stop.wait(interval)


# ----- cache files -------------------------------------------------------------------------


def _layout_suffix(layer: FileLayer) -> str:
    """ "" for a layer laid out as modelreg images are; else a tag of how it is laid out.

    The same blob can be read two ways (an image's tar below model/, another
    tool's tar at its entry names, a raw file at a path): each gets its own cache entry.
    """
    from .packing import MODEL_ROOT

    if layer.archive and layer.root == MODEL_ROOT:
        return ""
    how = f"{layer.archive}\0{layer.root}\0{layer.path}".encode()
    return "." + sha256_digest(how).split(":", 1)[1][:16]


@contextlib.contextmanager
def _scratch(parent: Path) -> Iterator[Path]:
    """A private temporary directory next to where its content will be published."""
    _sweep_stale(parent)
    path = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX, dir=parent))
    try:
        yield path
    finally:
        if path.exists():
            _make_writable(path)
            shutil.rmtree(path, ignore_errors=True)


def _publish(scratch: Path, final: Path) -> None:
    """Rename into place; if another process won the race, its identical copy stands."""
    os.chmod(scratch, 0o755)
    try:
        os.rename(scratch, final)
    except OSError:
        if not final.is_dir():
            raise


def _link_tree(
    source: Path, destination: Path, wanted: Callable[[str], bool] | None = None
) -> list[str]:
    linked = []
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        target = destination / relative
        try:
            if path.is_dir():
                if wanted is None:
                    target.mkdir(exist_ok=True)
            elif wanted is None or wanted(relative.as_posix()):
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, target)
                linked.append(relative.as_posix())
        except (FileExistsError, NotADirectoryError):
            raise IntegrityError(
                f"two layer entries both write {relative.as_posix()!r}",
                "the model's layers overlap: it is damaged or unsafe; nothing was written "
                "(ask its publisher to re-push)",
            ) from None
    return linked


def _make_read_only(root: Path) -> None:
    for path in root.rglob("*"):
        if path.is_file():
            path.chmod(path.stat().st_mode & 0o555)


def _make_writable(root: Path) -> None:
    for path in root.rglob("*"):
        with contextlib.suppress(OSError):
            path.chmod(path.stat().st_mode | 0o200)


def _sweep_stale(parent: Path) -> None:
    """Remove temporary directories that a crashed process left behind long ago."""
    now = time.time()
    with contextlib.suppress(OSError):
        for entry in parent.iterdir():
            if entry.name.startswith(_TEMP_PREFIX):
                with contextlib.suppress(OSError):
                    if now - entry.stat().st_mtime > _STALE_TEMP_SECONDS:
                        _make_writable(entry)
                        shutil.rmtree(entry, ignore_errors=True)


def _write_atomically(path: Path, data: bytes) -> None:
    fd, name = tempfile.mkstemp(prefix=_TEMP_PREFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(name, 0o444)
        os.replace(name, path)
    finally:
        Path(name).unlink(missing_ok=True)
