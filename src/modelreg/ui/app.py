"""The read-only web UI: a Starlette application over the library, pages rendered on the
server with Jinja2 (autoescaping on), no script at all, and a strict
Content-Security-Policy so that nothing a registry says can run in the browser."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..cli._output import human_size
from ..errors import InvalidInput, ModelregError, NotFound
from ..store import Stores
from . import charts, views
from .guards import LocalHostsOnly, SecurityHeaders
from .sources import Sources

if TYPE_CHECKING:
    from ..policy import TrustPolicy

_HERE = Path(__file__).parent
_STATUS = {InvalidInput: 400, NotFound: 404}


def _link(path: str, **params: Any) -> str:
    pairs: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        values = value if isinstance(value, list | tuple) else [value]
        pairs.extend((key, str(v)) for v in values)
    return path + ("?" + urllib.parse.urlencode(pairs) if pairs else "")


def _value(value: Any) -> str:
    """A lineage value as text: floats without binary noise (0.175, not 0.17500000000000002)."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:.12g}"
    return json.dumps(value, sort_keys=True)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,  # every template, whatever its name
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["link"] = _link
    env.filters["size"] = lambda n: "-" if n is None else human_size(int(n))
    env.filters["short"] = lambda d: (d or "")[:19]
    env.filters["num"] = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    env.filters["value"] = _value
    return env


class UiApp:
    """The pages, bound to one set of stores, sources and trust policy."""

    def __init__(self, stores: Stores, sources: Sources, policy: TrustPolicy | None) -> None:
        self.stores = stores
        self.sources = sources
        self.policy = policy
        self.templates = _environment()

    def render(self, template: str, status: int = 200, **values: Any) -> HTMLResponse:
        page = self.templates.get_template(template).render(
            trusted=self.policy is not None, **values
        )
        return HTMLResponse(page, status_code=status)

    def _name(self, request: Request) -> str:
        name = request.query_params.get("name", "")
        if not name:
            raise InvalidInput("no repository named", "open a repository from the home page")
        views.repository_handle(self.stores, name)  # a valid name, or InvalidInput
        if not self.sources.allows(name):
            raise NotFound(
                f"{name} is not one of the repositories this UI serves",
                "start 'modelreg ui' with it (or its registry) as a SOURCE",
            )
        return name

    def home(self, request: Request) -> HTMLResponse:
        listing = self.sources.list(self.stores)
        rows = views.summaries(self.stores, listing.names, self.policy)
        return self.render("home.html", rows=rows, errors=listing.errors, sources=self.sources)

    def repository(self, request: Request) -> HTMLResponse:
        name = self._name(request)
        # one box, several conditions joined by " and " (or several where= parameters)
        where = [
            part.strip()
            for value in request.query_params.getlist("where")
            for part in value.split(" and ")
            if part.strip()
        ]
        sort = request.query_params.get("sort", "version")
        descending = request.query_params.get("order", "desc") != "asc"
        page = views.repository_page(self.stores, name, self.policy, where)
        rows = views.sort_rows(page.rows, sort, descending)
        holders: dict[int, list[str]] = {}
        verified: dict[str, list[str]] = {}
        for state in page.stages:
            if state.verified and state.digest:
                verified.setdefault(state.digest, []).append(state.name)
                if state.version is not None:
                    holders.setdefault(state.version, []).append(state.name)
        chart_list = []
        for metric in page.metric_names:
            points = sorted(
                (r.info.version, r.metrics[metric]) for r in page.rows if metric in r.metrics
            )
            chart_list.append((metric, Markup(charts.metric_chart(metric, points, holders))))
        return self.render(
            "repository.html",
            page=page,
            rows=rows,
            sort=sort,
            descending=descending,
            verified=verified,
            current={state.name: state for state in page.stages if state.verified},
            charts=chart_list,
        )

    def version(self, request: Request) -> HTMLResponse:
        name = self._name(request)
        identifier = request.query_params.get("digest") or request.query_params.get("v", "")
        if not identifier:
            raise InvalidInput("no version named", "open a version from the repository page")
        if identifier.isdigit():
            identifier = f"v{identifier}"
        page = views.version_page(self.stores, name, identifier, self.policy)
        return self.render("version.html", page=page)

    def diff(self, request: Request) -> HTMLResponse:
        name = self._name(request)
        first = request.query_params.get("a", "")
        second = request.query_params.get("b", "")
        if not first or not second:
            raise InvalidInput("a diff needs two versions", "pick two versions: ?a=1&b=2")
        page = views.diff_page(self.stores, name, first, second, self.policy)
        return self.render("diff.html", page=page)

    def error(self, error: ModelregError) -> HTMLResponse:
        status = next((s for kind, s in _STATUS.items() if isinstance(error, kind)), 502)
        return self.render("error.html", status=status, error=error)

    def route(self, handler: Callable[[Request], HTMLResponse]) -> Callable[[Request], Response]:
        def endpoint(request: Request) -> Response:
            try:
                return handler(request)
            except ModelregError as exc:
                return self.error(exc)
            except (ValueError, KeyError, TypeError, RecursionError, OSError) as exc:
                # a hostile registry's answer the library did not foresee: a panel, not a crash
                return self.error(
                    ModelregError(
                        f"could not read this page's data ({type(exc).__name__})",
                        "the registry may be broken or hostile",
                    )
                )

        return endpoint


def create_app(stores: Stores, sources: Sources, policy: TrustPolicy | None) -> Starlette:
    ui = UiApp(stores, sources, policy)

    async def not_found(request: Request, exc: Exception) -> Response:
        return ui.error(NotFound(f"no page at {request.url.path}", "start from the home page: /"))

    routes = [
        Route("/", ui.route(ui.home)),
        Route("/repo", ui.route(ui.repository)),
        Route("/version", ui.route(ui.version)),
        Route("/diff", ui.route(ui.diff)),
        Mount("/static", StaticFiles(directory=_HERE / "static"), name="static"),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={404: not_found},
        middleware=[Middleware(SecurityHeaders), Middleware(LocalHostsOnly)],
    )
