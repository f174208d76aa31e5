"""ServiceDefined version 2 carries each service's questions in Chinese and English; a version 1
event already on the topic (no questions) is still read, through its upcaster."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from civicgrid_contracts import Envelope
from civicgrid_contracts.events.catalogue import AnswerValue, ServiceDefined, ServiceQuestion
from civicgrid_contracts.values import TimeLimits

T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)


def defined(**over) -> ServiceDefined:
    return ServiceDefined(request_id="sanitation", service_code="sanitation", name_zh="環境衛生",
                          name_en="Sanitation", group="environment", handled_by=("grid",),
                          time_limits=TimeLimits(response_hours=2, resolution_hours=24), revision=3, changed_at=T0,
                          **over)


def test_a_version_2_event_round_trips_with_both_texts_of_each_question():
    q = ServiceQuestion(code="waste_type", datatype="singlevaluelist", required=True, description_zh="是什麼垃圾？",
                        description_en="What kind of waste?",
                        values=(AnswerValue(key="bulky", name_zh="大件垃圾", name_en="Bulky items"),))
    env = Envelope.wrap(defined(attributes=(q,)), source="/civicgrid/intake")
    _, value, headers = env.to_kafka()
    assert dict(headers)["ce_schemaversion"] == b"2"
    back = Envelope.from_kafka(value, headers)
    assert back == env and back.data.attributes[0].values[0].name_zh == "大件垃圾"


def test_a_version_1_event_is_read_as_one_whose_questions_are_unknown():
    env = Envelope.wrap(defined(), source="/civicgrid/intake")
    _, value, headers = env.to_kafka()
    v1 = {k: v for k, v in json.loads(value).items() if k != "attributes"}
    headers = [(k, b"1" if k == "ce_schemaversion" else v) for k, v in headers]
    back = Envelope.from_kafka(json.dumps(v1).encode(), headers)
    assert back.schemaversion == 2 and back.data.attributes is None
    assert back.data.revision == 3 and back.data.name_zh == "環境衛生"
