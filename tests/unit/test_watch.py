"""The terminal line ``ltv watch`` prints for each output record."""

from __future__ import annotations

import orjson

from streams.watch import summarise


def test_an_update_line_shows_the_prediction_and_leaves_out_nulls() -> None:
    body = {
        "customer_id": "c-000042",
        "version": 3,
        "orders": 2,
        "net_revenue": "180.00",
        "total_ltv": "412.35",
        "predicted_ltv": "232.35",
        "p_alive": 0.87654,
        "churn_risk": "low",
        "segment": "loyal",
        "aov": "90.00",
    }
    line = summarise(orjson.dumps(body))
    assert line == (
        "c-000042: version=3 orders=2 net_revenue=180.00 total_ltv=412.35 "
        "predicted_ltv=232.35 p_alive=0.88 churn_risk=low segment=loyal"
    )
    body.update(predicted_ltv=None, p_alive=None, segment=None, churn_risk=None)
    assert summarise(orjson.dumps(body)) == (
        "c-000042: version=3 orders=2 net_revenue=180.00 total_ltv=412.35"
    )


def test_churn_and_dead_letter_lines() -> None:
    churn = {"customer_id": "c-1", "previous": "low", "current": "high"}
    assert summarise(orjson.dumps(churn)) == "c-1: risk low -> high"
    letter = {"source_topic": "orders.purchases", "error": {"code": "schema", "message": "bad"}}
    assert summarise(orjson.dumps(letter)) == "dead letter from orders.purchases (schema): bad"
