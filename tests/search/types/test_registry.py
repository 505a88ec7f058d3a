"""The search type registry (https://hl7.org/fhir/R4/search.html#ptypes): one complete entry per type."""

from __future__ import annotations

import pytest

from fhir_server.search import parameters
from fhir_server.search.types import REGISTRY, SearchType
from fhir_server.store.tables import INDEX_TABLES

pytestmark = pytest.mark.rolled_back


def test_every_type_the_parameter_registry_uses_is_registered_except_special() -> None:
    used = {sp.type for rt in parameters.resource_types() for sp in parameters.for_type(rt).values()}
    assert used - set(REGISTRY) == {"special"}


@pytest.mark.parametrize("search_type", REGISTRY.values(), ids=list(REGISTRY))
def test_each_type_is_registered_under_its_code_and_takes_missing(search_type: SearchType) -> None:
    assert REGISTRY[search_type.code] is search_type
    # `_list:missing` (is the resource in any List at all?) would tell a patient that another
    # patient's List names it: refused (search/types/list_param.py).
    assert ("missing" in search_type.modifiers) == (search_type.code != "list")


@pytest.mark.parametrize("search_type", REGISTRY.values(), ids=list(REGISTRY))
def test_each_type_is_searched_one_way(search_type: SearchType) -> None:
    # an index test per row, rows of its own (composite), or a test on the resource table (_id, _lastUpdated)
    ways = [search_type.test, search_type.rows, search_type.column_test]
    assert sum(way is not None for way in ways) == 1


@pytest.mark.parametrize(
    "search_type", [t for t in REGISTRY.values() if t.values is not None], ids=lambda t: t.code
)
def test_a_type_with_index_rows_has_its_table_a_test_and_a_sort_column(search_type: SearchType) -> None:
    assert search_type.code in INDEX_TABLES
    assert search_type.test is not None and search_type.sort_column is not None


def test_auxiliary_rows_are_searched_by_their_modifier() -> None:
    with_aux = {t.code: (t.aux_modifier, t.aux_suffix) for t in REGISTRY.values() if t.aux_suffix}
    assert with_aux == {
        "token": ("of-type", parameters.OF_TYPE_SUFFIX),
        "reference": ("identifier", parameters.IDENTIFIER_SUFFIX),
    }
