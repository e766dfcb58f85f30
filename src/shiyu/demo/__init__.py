"""Demo data 演示数据: a synthetic, database-free demo city 演示城市 for seeding and benchmarks."""

from __future__ import annotations

from shiyu.demo.city import (
    DEMO_PASSWORD,
    SIZES,
    DemoCity,
    DemoDepartment,
    DemoGrid,
    DemoHouseholdGroup,
    DemoUnit,
    DemoUser,
    SizeSpec,
    city_to_geojson,
    generate_city,
)

__all__ = [
    "DEMO_PASSWORD",
    "SIZES",
    "DemoCity",
    "DemoDepartment",
    "DemoGrid",
    "DemoHouseholdGroup",
    "DemoUnit",
    "DemoUser",
    "SizeSpec",
    "city_to_geojson",
    "generate_city",
]
