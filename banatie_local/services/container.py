"""Building the services one appliance needs, once, for the HTTP app or the CLI."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from banatie_local.clock import Clock
from banatie_local.config import ConfigError, Settings
from banatie_local.db.boundary import Database
from banatie_local.db.connection import open_database, upgrade_database
from banatie_local.metrics import Metrics
from banatie_local.providers import ImageProvider, create_provider
from banatie_local.services.aliases import AliasService
from banatie_local.services.c2pa_signing import load_signer
from banatie_local.services.cascade import Cascade
from banatie_local.services.flows import FlowService
from banatie_local.services.generations import GenerationService
from banatie_local.services.housekeeping import ChangeFeed, Housekeeper
from banatie_local.services.imagecache import ImageCache
from banatie_local.services.images import ImageService
from banatie_local.services.keys import KeyService
from banatie_local.services.legacy import LegacyService
from banatie_local.services.live import HitCounter, LiveService
from banatie_local.services.maintenance import Maintenance
from banatie_local.services.marking import Marker
from banatie_local.services.openai_door import OpenAiImages
from banatie_local.services.owner import owner_id
from banatie_local.services.projects import DEFAULT_SLUG, ProjectService
from banatie_local.services.published import PublishedNames
from banatie_local.services.ratelimit import SharedLimiter
from banatie_local.services.scopes import ScopeService
from banatie_local.services.signing import SigningService
from banatie_local.services.variant_store import VariantStore
from banatie_local.storage import Storage, create_storage


@dataclass
class Services:
    settings: Settings
    clock: Clock
    db: Database
    storage: Storage
    projects: ProjectService
    keys: KeyService
    key_limiter: SharedLimiter
    image_cache: ImageCache
    aliases: AliasService
    flows: FlowService
    images: ImageService
    provider: ImageProvider
    generations: GenerationService
    names: PublishedNames
    legacy: LegacyService
    openai: OpenAiImages
    scopes: ScopeService
    live: LiveService
    variants: VariantStore
    signing: SigningService
    maintenance: Maintenance
    housekeeper: Housekeeper
    owner: str
    metrics: Metrics | None
    started_at: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)  # /v1/models "created"

    def close(self) -> None:
        self.db.close()
        if self.metrics is not None:
            self.metrics.close()


def marker_for(settings: Settings) -> Marker:
    """How generated files are marked: the prompt or not, and a C2PA signer when a
    certificate is configured (a bad one stops startup with one sentence)."""
    found = settings.metadata
    signer = None
    if found.c2pa_certificate or found.c2pa_private_key:
        signer = load_signer(found.c2pa_certificate, found.c2pa_private_key)
    return Marker(found.embed_prompt, signer)


def upgrade_schema(settings: Settings) -> list[int]:
    """Apply the pending migrations to the configured database; their numbers."""
    raw, applied = upgrade_database(
        settings.database_path, Clock(), settings.database.busy_timeout_ms, settings.database.url
    )
    raw.close()
    return applied


def open_services(settings: Settings, provider: ImageProvider | None = None) -> Services:
    """Open the database (migrating it), the storage and the provider that
    ``settings`` name (``provider`` replaces the configured one)."""
    clock = Clock()
    storage = create_storage(settings)
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"the data directory {settings.data_dir} cannot be created: {exc.strerror or exc}."
        ) from exc
    busy_ms = settings.database.busy_timeout_ms
    raw = open_database(settings.database_path, clock, busy_ms, settings.database.url)
    db = Database(raw, busy_ms, settings.database.read_threads)
    owner = owner_id()
    projects = ProjectService(db, clock)
    keys = KeyService(db, clock, projects)
    limiter = SharedLimiter(db)
    cache = ImageCache(settings.live.memory_cache_mb * 1024 * 1024)
    aliases = AliasService(db, clock)
    cascade = Cascade(db, clock, storage, cache)
    flows = FlowService(db, clock, aliases, cascade)
    provider = provider or create_provider(settings)
    metrics = None
    prices = {  # estimated USD per image, by provider
        "gemini": settings.generation.gemini_price_per_image,
        "openai": settings.generation.openai_price_per_image,
    }
    if settings.server.metrics:
        metrics = Metrics(prices)
    generations = GenerationService(
        db, clock, settings, storage, aliases, flows, cascade, provider, owner=owner,
        metrics=metrics, marker=marker_for(settings),
    )  # fmt: skip
    if metrics is not None:
        db.on_busy = metrics.busy.inc
    scopes = ScopeService(db, clock, cascade)
    images = ImageService(db, clock, settings, storage, cache, aliases, flows, cascade)
    names = PublishedNames(db, cache)
    live = LiveService(
        db=db,
        clock=clock,
        settings=settings,
        storage=storage,
        cache=cache,
        projects=projects,
        scopes=scopes,
        generations=generations,
        limiter=limiter,
        counter=HitCounter(db),
        owner=owner,
    )
    # PostgreSQL commits ids out of order: read back what a transaction as long as
    # the busy timeout could still commit
    lookback = (busy_ms + 5000) * 1000 if db.dialect.postgres else 0
    signing = SigningService(db, clock, settings.cdn.signature_grace_seconds)
    feed = ChangeFeed(db, cache, keys, live, signing, lookback)
    return Services(
        settings=settings,
        clock=clock,
        db=db,
        storage=storage,
        projects=projects,
        keys=keys,
        key_limiter=limiter,
        image_cache=cache,
        aliases=aliases,
        flows=flows,
        images=images,
        provider=provider,
        generations=generations,
        names=names,
        legacy=LegacyService(db, clock, images, generations, names),
        openai=OpenAiImages(db, storage, images, generations),
        scopes=scopes,
        live=live,
        variants=VariantStore(
            db, clock, storage, cache, cascade, settings.cdn.max_variants_per_image
        ),
        signing=signing,
        maintenance=Maintenance(db, storage, cascade, prices),
        housekeeper=Housekeeper(
            db, clock, settings.live.hit_flush_seconds, feed, live, generations, limiter
        ),
        owner=owner,
        metrics=metrics,
    )


@dataclass(frozen=True)
class InitResult:
    """What ``initialize`` did; the plaintext keys exist only here."""

    created_project: bool
    master_key: str | None
    project_key: str | None


def initialize(services: Services, create_keys: bool = True) -> InitResult:
    """Create the default organization and project, and on a keyless first run a
    master key and a project key. Running it again changes nothing."""
    with services.db.atomic():
        existed = services.projects.find(DEFAULT_SLUG, DEFAULT_SLUG) is not None
        services.projects.ensure(DEFAULT_SLUG, DEFAULT_SLUG)
        if not create_keys or services.keys.any_exist():
            return InitResult(not existed, None, None)
        master = services.keys.create("master", name="initial master key")
        project = services.keys.create("project", name="initial project key")
        return InitResult(not existed, master.plaintext, project.plaintext)
