"""The site description the matcher needs: zone lengths and walking routes (for trajectory plausibility).

Read from ``matcher.site_file``, else ``scenario.file`` (a scenario file is a site file with more in it), else
the packaged ``default-site.yaml``. Only ``zones[].name``, ``zones[].length_m`` and ``routes[].path`` are read.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.config import Settings, read_yaml_mapping, validation_lines
from matcher.trajectory import ZoneMap

DEFAULT_SITE = Path(__file__).with_name("default-site.yaml")
DEFAULT_ZONE_LENGTH_M = 12.0


class SiteError(ValueError):
    """A site file that is missing or does not describe zones and routes."""


class _Zone(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    length_m: float = Field(default=DEFAULT_ZONE_LENGTH_M, gt=0)


class _Route(BaseModel):
    model_config = ConfigDict(extra="ignore")
    path: list[str] = Field(min_length=1)


class Site(BaseModel):
    model_config = ConfigDict(extra="ignore")
    zones: list[_Zone] = Field(min_length=1)
    routes: list[_Route] = Field(min_length=1)

    def zone_map(self) -> ZoneMap:
        return ZoneMap.from_routes([r.path for r in self.routes], {z.name: z.length_m for z in self.zones})


def site_file(settings: Settings) -> Path:
    return Path(settings.matcher.site_file or settings.scenario.file or DEFAULT_SITE)


def load_site(path: str | Path) -> Site:
    p = Path(path)
    data = read_yaml_mapping(p, "site file", SiteError)
    try:
        return Site.model_validate(data)
    except ValidationError as exc:
        raise SiteError(f"invalid site file {p}:\n" + validation_lines(exc)) from None
