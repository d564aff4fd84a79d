"""The Spark recipe in the README, run on a local Spark when pyspark is installed (it is not
in the test extra: CI skips this module)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import twitch_cds
from twitch_cds.screening import evaluate_many
from twitch_cds.screening.partition import patient_of

from .test_screening import NOW, _resources, population

pyspark = pytest.importorskip("pyspark")


def _screen_partition(
        groups: Iterable[tuple[str, Iterable[str]]]) -> Iterator[tuple[str, list[str]]]:
    """The README's per-partition function: (patient id, lines) in, flagged patients out."""
    pairs = ((pid, [json.loads(line) for line in lines]) for pid, lines in groups)
    for result in evaluate_many(pairs, now=NOW):
        if result.cards:
            yield result.patient_id, sorted(str(card.uuid) for card in result.cards)


def test_the_spark_recipe_flags_the_patients_evaluate_flags(tmp_path: Path) -> None:
    export = tmp_path / "export"
    population.generate(export, 80, seed=5, twitching=0.4)
    os.environ["PYSPARK_PYTHON"] = sys.executable
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master("local[2]").appName("twitch-cds-test").getOrCreate()
    try:
        lines = spark.sparkContext.textFile(str(export / "*.ndjson"))
        keyed = lines.map(lambda line: (patient_of(json.loads(line)), line))
        flagged: dict[str, Any] = dict(
            keyed.filter(lambda pair: pair[0] is not None).groupByKey()
            .mapPartitions(_screen_partition).collect())
    finally:
        spark.stop()
    expected = {}
    for pid, resources in _resources(export).items():
        cards = twitch_cds.evaluate(resources, now=NOW).cards
        if cards:
            expected[pid] = sorted(str(card.uuid) for card in cards)
    assert expected and flagged == expected
