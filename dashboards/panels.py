"""Small typed constructors for the panels the fleet dashboards use (SDK builders)."""

from __future__ import annotations

from typing import Any, TypeVar

from grafana_foundation_sdk.builders import barchart, geomap, piechart, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import geomap as geomap_models
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    DataTransformerConfig,
    FieldColorModeId,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
)

from dashboards.sources import PROMETHEUS

P = TypeVar(
    "P", timeseries.Panel, table.Panel, stat.Panel, barchart.Panel, piechart.Panel, geomap.Panel
)
Target = cogbuilder.Builder[cogvariants.Dataquery]

# Driver statuses of the read model (contract "Read models") and how the map colours them.
STATUS_COLOURS = {
    "on_schedule": "green",
    "behind_schedule": "orange",
    "off_route": "red",
    "stale": "purple",
    "idle": "blue",
}


def _setup(
    panel: P,
    title: str,
    description: str,
    source: DataSourceRef,
    targets: tuple[Target, ...],
    width: int,
    height: int,
) -> P:
    panel.title(title).description(description).datasource(source).span(width).height(height)
    for target in targets:
        panel.with_target(target)
    return panel


def promql(expr: str, legend: str, ref: str = "A") -> prom.Dataquery:
    """A Prometheus range query with its legend."""
    return prom.Dataquery().expr(expr).legend_format(legend).ref_id(ref).range()


def time_series(
    title: str, description: str, source: DataSourceRef, *targets: Target,
    unit: str = "short", width: int = 12, height: int = 8,
) -> timeseries.Panel:  # fmt: skip
    """A time series panel (time column first)."""
    panel = _setup(timeseries.Panel(), title, description, source, targets, width, height)
    legend = common_builders.VizLegendOptions().show_legend(True)
    return panel.unit(unit).legend(legend.display_mode(common.LegendDisplayMode.LIST))


def prom_series(title: str, description: str, unit: str, *queries: prom.Dataquery) -> Any:
    """A Prometheus time series panel, half a row wide."""
    return time_series(title, description, PROMETHEUS, *queries, unit=unit)


def table_panel(
    title: str, description: str, source: DataSourceRef, *targets: Target,
    width: int = 24, height: int = 9, transformations: list[DataTransformerConfig] | None = None,
) -> table.Panel:  # fmt: skip
    """A table of the query's rows."""
    panel = _setup(table.Panel(), title, description, source, targets, width, height)
    panel.show_header(True)
    if transformations:
        panel.transformations(transformations)
    return panel


def stat_panel(
    title: str, description: str, source: DataSourceRef, *targets: Target,
    unit: str = "short", width: int = 6, height: int = 5,
) -> stat.Panel:  # fmt: skip
    """One big number."""
    panel = _setup(stat.Panel(), title, description, source, targets, width, height)
    return panel.unit(unit).graph_mode(common.BigValueGraphMode.NONE)


def bar_chart(
    title: str, description: str, source: DataSourceRef, *targets: Target,
    unit: str = "short", width: int = 12, height: int = 8,
) -> barchart.Panel:  # fmt: skip
    """Bars per category (first string column)."""
    panel = _setup(barchart.Panel(), title, description, source, targets, width, height)
    return panel.unit(unit).show_value(common.VisibilityMode.AUTO)


def pie(
    title: str, description: str, source: DataSourceRef, *targets: Target,
    width: int = 6, height: int = 8,
) -> piechart.Panel:  # fmt: skip
    """Shares of a whole, one slice per row (label column, value column)."""
    panel = _setup(piechart.Panel(), title, description, source, targets, width, height)
    return panel.reduce_options(
        common_builders.ReduceDataOptions().values(True).calcs([]).fields("")
    )


def status_mappings() -> list[Any]:
    """Value mappings that colour a `status` field as the contract names it."""
    return [
        ValueMap(
            options={
                status: ValueMappingResult(color=colour, index=i)
                for i, (status, colour) in enumerate(STATUS_COLOURS.items())
            }
        )
    ]


def traffic_light(panel: P, orange_from: float, red_from: float) -> P:
    """Colour values green, then orange from one threshold, red from another."""
    steps = [Threshold(None, "green"), Threshold(orange_from, "orange"), Threshold(red_from, "red")]
    return panel.thresholds(
        dash.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps)
    ).color_scheme(dash.FieldColor().mode(FieldColorModeId.THRESHOLDS))


def marker_layer(
    name: str, ref: str, colour_field: str | None = None, size_field: str | None = None
) -> common_builders.MapLayerOptions:
    """A geomap marker layer over the latitude/longitude columns of one query."""
    style: dict[str, Any] = {
        "color": {"fixed": "blue"} if colour_field is None else {"field": colour_field},
        "size": {"fixed": 6} if size_field is None
        else {"field": size_field, "min": 4, "max": 30},
        "opacity": 0.8,
    }  # fmt: skip
    return (
        common_builders.MapLayerOptions()
        .type("markers")
        .name(name)
        .config({"showLegend": True, "style": style})
        .location(
            common_builders.FrameGeometrySource()
            .mode(common.FrameGeometrySourceMode.COORDS)
            .latitude("latitude")
            .longitude("longitude")
        )
        .filter_data({"id": "byRefId", "options": ref})
        .tooltip(True)
    )


def map_panel(
    title: str, description: str, source: DataSourceRef, targets: list[Target],
    layers: list[cogbuilder.Builder[common.MapLayerOptions]], width: int = 16, height: int = 14,
) -> geomap.Panel:  # fmt: skip
    """A geomap centred on the fleet's data (fit to all layers)."""
    panel = _setup(geomap.Panel(), title, description, source, tuple(targets), width, height)
    return (
        panel.view(geomap.MapViewConfig().id("fit").all_layers(True).zoom(11))
        .basemap(common_builders.MapLayerOptions().type("default").name("Basemap"))
        .layers(layers)
        .tooltip(geomap.TooltipOptions().mode(geomap_models.TooltipMode.DETAILS))
    )


def extract_json(source_field: str) -> DataTransformerConfig:
    """Transformation: JSON text in one field -> a column per key (Redis values)."""
    return DataTransformerConfig(
        id_val="extractFields",
        options={"source": source_field, "format": "json", "replace": True},
    )


def new_dashboard(uid: str, title: str, description: str, tags: list[str]) -> dash.Dashboard:
    """A dashboard with the fleet's defaults: UTC, last 6 hours, shared crosshair."""
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["fleet", *tags])
        .timezone("utc")
        .time("now-6h", "now")
        .refresh("30s")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .readonly()
    )


def number_panels(board: dash.Dashboard) -> dash.Dashboard:
    """Give every panel a stable id (its position), which Grafana needs for links."""
    for i, panel in enumerate(board.build().panels or [], start=1):
        panel.id_val = i
    return board
