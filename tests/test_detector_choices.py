"""The redaction rule's detector is a choice list: every detector says what it finds and shows an
example that it does find."""

import html

import pytest
from django.urls import reverse

from connectors.detectors import DETECTORS, find_spans
from connectors.models import RedactionRule
from connectors.redaction import SPECIAL_DETECTORS, detector_choices
from tests.test_admin import connector_form


@pytest.mark.parametrize("key", list(DETECTORS))
def test_each_detector_finds_its_own_example(key):
    detector = DETECTORS[key]
    assert detector.description and detector.example
    spans = find_spans(detector.example, [key])
    assert [span.type for span in spans] == [key]


def test_the_choices_are_every_detector_labelled_with_its_description_and_example():
    [(built_in_title, built_in), (own_title, own)] = detector_choices()
    assert (built_in_title, own_title) == ("Built-in detectors", "Your own")
    assert [key for key, _ in built_in] == list(DETECTORS)
    assert [key for key, _ in own] == list(SPECIAL_DETECTORS)
    assert dict(built_in)["iban"] == (
        "iban: IBANs (country format, mod 97) (e.g. DE89 3704 0044 0532 0130 00)"
    )


def test_the_connector_page_offers_the_detectors_as_a_list(admin_client):
    page = admin_client.get(reverse("admin:connectors_connector_add")).content.decode()
    assert '<select name="redaction_rules-__prefix__-detector"' in page
    assert '<optgroup label="Built-in detectors">' in page
    assert html.escape("email: e-mail addresses (e.g. ana.lopez@example.com)") in page


def test_a_detector_that_is_not_in_the_list_is_refused_next_to_its_field(
    admin_client, demo_provider
):
    form = connector_form(demo_provider, **{"redaction_rules-0-detector": "passport"})
    response = admin_client.post(reverse("admin:connectors_connector_add"), form)
    assert response.status_code == 200
    assert "Select a valid choice. passport is not one of the available choices." in (
        html.unescape(response.content.decode())
    )
    assert not RedactionRule.objects.exists()
