"""Each proto enum's mapping (sparc_video/api/enums.py) is declared once and holds both ways."""

from __future__ import annotations

from typing import Any

import pytest
from sparc.video.v1 import export_pb2

from sparc_video.api import enums
from sparc_video.api.enums import ProtoEnum

TABLES: dict[str, tuple[Any, Any]] = {
    "STATES": (enums.STATES, export_pb2.Export.State),
    "PRIORITIES": (enums.PRIORITIES, export_pb2.Export.Priority),
    "OUTPUT_KINDS": (enums.OUTPUT_KINDS, export_pb2.Output.Kind),
    "HARDWARE": (enums.HARDWARE, export_pb2.TranscodeOptions.Hardware),
    "IMAGE_FORMATS": (enums.IMAGE_FORMATS, export_pb2.ThumbnailOptions.Format),
    "CONTAINERS": (enums.CONTAINERS, export_pb2.ConvertOptions.Container),
    "QUALITIES": (enums.QUALITIES, export_pb2.CompressOptions.Quality),
    "POSITIONS": (enums.POSITIONS, export_pb2.WatermarkOptions.Position),
    "TRIM_MODES": (enums.TRIM_MODES, export_pb2.TrimOptions.Mode),
    "REDACT_MODES": (enums.REDACT_MODES, export_pb2.RedactOptions.Mode),
    "GAP_MODES": (enums.GAP_MODES, export_pb2.CameraTimeRange.GapMode),
}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_proto_value_maps_back_to_itself(name: str) -> None:
    table, proto_enum = TABLES[name]
    values = set(proto_enum.values())
    # Every named value but UNSPECIFIED has a domain value, and it maps back to it.
    assert set(table.to_proto.values()) | {0} == values
    for domain, proto in table.to_proto.items():
        assert table.from_proto[proto] == domain
    # UNSPECIFIED reads as a default, or is refused where a value must be named.
    assert 0 in table.from_proto or name in {"STATES", "OUTPUT_KINDS", "CONTAINERS"}


def test_a_value_mapped_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="one proto value"):
        ProtoEnum({"a": 1, "b": 1})
    with pytest.raises(ValueError, match="unspecified"):
        ProtoEnum({"": 0, "a": 1}, unspecified="a")
