"""The partner directory shipped with referrals: every organisation of the seed page, written as
the page writes it, in HSDS 3 shape, and exchanged as JSON and CSV without loss."""

import copy
import json
from pathlib import Path

import pytest

from services.referrals import directory, domain
from services.referrals.seed import make_directory

SEED_PAGE = Path(directory.__file__).parent / "seed" / "source_page.txt"

# Read by hand from the seed page (002_8b31db443b047c5b.txt): every organisation, every phone
# and fax number and every e-mail address, character for character.
EXPECTED = {
    "Aide aux Personnes Déplacées asbl": (["+32 04 342 06 02"], ["administration@apdasbl.be"]),
    "ADDE": (["+ 32 02 227 42 41"], ["servicejuridique@adde.be", "dip@adde.be"]),
    "CIRE": (["+32 2 6297 734", "+32 2 629 77 10", "+32 2 629 77 33"], ["cire@cire.be", "accuiel@cire.be"]),
    "Intact": (["+32 (0)2 539 02 04", "+32(0) 497 55 04 56", "+32(0) 479 67 19 46"], ["contact@intact-association.org"]),
    "JRS Belgium": (["+32-2 738 0818", "32 (0)800 14 912", "+32-2 738 0816"], ["belgium@jrs.net"]),
    "Caritas International": (["+32 2 229 36 11", "+32 2 229 36 36"], ["infofr@caritasint.be"]),
    "Centrum Algemeen Welzijnswerk": (["+32 080013500"], []),
    "Convivial": (["+32 02 503 43 46", "+32 02 315 39 00"], ["info@convivial.be", "info.bapa@convivial.be"]),
    "Myria": (["+32 (0) 800 14 912", "+32 (0)2 212 30 00"], ["myria@myria.be"]),
    "NANSEN": (["+32 487 84 65 40", "+ 32 0472/040907"], ["info@nansenrefugee.be"]),
    "Groupe Sireas": (["+ 32 02 649 99 58"], ["sireas@sireas.be"]),
    "Espace 28": (["+32 087341053"], []),
    "Steunpunt Asiel & Migratie vzw": (["+32 015 34 07 88"], ["info@vluchtelingendienst.be"]),
    "Point d’Appui ASBL": (["+32 04 227 69 51", "+32 04 227 42 64"], ["info@pointdappui.be"]),
    "Flemish Refugee Action": (["+32 02 225 44 00", "+32 02 201 03 76", "02-205 00 55"], ["info@vluchtelingenwerk.be"]),
    "GAMS Belgium": (["+32 (0)2 219 43 40"], ["info@gams.be"]),
    "CNCD-11.11.11": ([], []),
    "OCMW/CPAS": ([], []),
    "Samusocial": (["+32 (0)800 99 340", "+32 025511220"], ["info@samusocial.be"]),
    "w2eu.info": ([], ["contact@w2eu.info", "w2eu_info@yahoo.com"]),
}


@pytest.fixture(scope="module")
def seed():
    return directory.load_seed()


@pytest.fixture(scope="module")
def page():
    return SEED_PAGE.read_text(encoding="utf-8")


def phones_of(org):
    numbers = [p["number"] for p in org.get("phones") or []]
    for service in org.get("services") or []:
        numbers += [p["number"] for p in service.get("phones") or []]
    return numbers


def emails_of(org):
    emails = [org["email"]] if org.get("email") else []
    return emails + [c["email"] for c in org.get("contacts") or [] if c.get("email") and c["email"] not in emails]


def test_the_directory_holds_every_organisation_of_the_seed_with_its_phones_and_emails_as_written(seed, page):
    assert sorted(org["name"] for org in seed) == sorted(EXPECTED)
    for org in seed:
        phones, emails = EXPECTED[org["name"]]
        assert phones_of(org) == phones, org["name"]
        assert emails_of(org) == emails, org["name"]
        for value in phones + emails:
            assert value in page, f"{value!r} is not on the seed page"
    fax = [p["number"] for org in seed for p in org.get("phones") or [] if p.get("type") == "fax"]
    assert sorted(fax) == sorted(["+32 2 629 77 33", "+32-2 738 0816", "+32 2 229 36 36", "+32 04 227 42 64",
                                  "+32 02 201 03 76"])


def test_no_field_is_invented_quotes_are_verbatim_and_derivations_say_so(seed, page):
    for org in seed:
        assert org["x_source_text"] in page and org["description"] in page, org["name"]
        for service in org.get("services") or []:
            assert service["description"] in page, (org["name"], service["name"])
            if service.get("eligibility_description"):
                assert service["eligibility_description"] in page
        for location in org.get("locations") or []:
            for address in location.get("addresses") or []:
                assert address["address_1"] in org["x_source_text"] and address["postal_code"] in org["x_source_text"]
                assert location["x_region_derived"] is False
            if not location.get("addresses"):
                assert location["x_region_derived"] is True
                quoted = location["x_region_basis"].split("“")[1].rstrip("”")
                assert quoted in page
        # The page's "Website" lines carry no address: only w2eu.info names its site.
        assert ("website" in org) == (org["name"] == "w2eu.info")
    by_name = {org["name"]: org for org in seed}
    assert by_name["Intact"].get("locations") is None  # the page says nothing of where Intact is
    assert [p["languages"][0]["code"] for p in by_name["Intact"]["phones"][1:]] == ["nl", "fr"]
    assert by_name["CIRE"]["x_website_listed"] is True and by_name["Intact"]["x_website_listed"] is False


def test_opening_hours_of_jrs_and_the_flemish_refugee_action_helpdesk_are_hsds_schedules(seed):
    by_name = {org["name"]: org for org in seed}
    jrs = by_name["JRS Belgium"]["locations"][0]["schedules"]
    assert [(s["freq"], s["byday"], s["opens_at"], s["closes_at"]) for s in jrs] == [
        ("WEEKLY", "MO", "09:30", "12:30"), ("WEEKLY", "TH", "09:30", "12:30")]
    helpdesk = next(s for s in by_name["Flemish Refugee Action"]["services"] if s["name"] == "Legal helpdesk")
    assert [(s["byday"], s["opens_at"], s["closes_at"]) for s in helpdesk["schedules"]] == [
        ("MO,FR", "09:00", "12:30"), ("WE", "13:30", "17:00")]
    assert sum(1 for org in seed for loc in org.get("locations") or [] for _ in loc.get("schedules") or []) == 2


def test_regions_come_from_the_address_city_or_else_from_the_words_of_the_page(seed):
    regions = {org["name"]: domain.organisation_regions(org) for org in seed}
    assert regions["CIRE"] == ["brussels"]
    assert regions["Espace 28"] == ["wallonia"]
    assert regions["Groupe Sireas"] == ["brussels", "wallonia"]
    assert regions["Centrum Algemeen Welzijnswerk"] == ["flanders", "brussels"]
    assert regions["Steunpunt Asiel & Migratie vzw"] == ["flanders"]
    assert regions["GAMS Belgium"] == [] and regions["OCMW/CPAS"] == []


def test_minors_can_be_referred_to_youth_services_from_the_seed_alone(seed):
    youth = [org["name"] for org in seed if "youth_services" in domain.organisation_categories(org)]
    assert youth == ["Caritas International"]
    service = domain.service_for(next(o for o in seed if o["name"] == "Caritas International"), "youth_services")
    assert service["eligibility_description"] == "unaccompanied minors"


def test_the_shipped_file_is_what_the_generator_builds():
    shipped = json.loads(make_directory.TARGET.read_text(encoding="utf-8"))
    assert shipped == make_directory.build()


def test_the_export_validates_against_the_hsds_3_schemas(seed):
    exported = json.loads(directory.export_json(seed))
    for org in exported:
        assert directory.hsds_errors(org) == [], org["name"]
    org_validator = directory.validator("organization.json")
    service_validator = directory.validator("service.json")
    assert not list(org_validator.iter_errors({k: v for k, v in exported[0].items() if k != "services"}))
    assert not list(service_validator.iter_errors(exported[0]["services"][0]))


def test_export_then_import_round_trips_without_change_as_json_and_as_csv(seed):
    as_json = directory.export_json(seed)
    assert directory.export_json(directory.import_json(as_json)) == as_json
    as_zip = directory.export_csv_zip(seed)
    back = directory.import_csv_zip(as_zip)
    assert back == seed
    assert directory.export_csv_zip(back) == as_zip


def test_an_import_that_does_not_fit_hsds_is_refused_with_where_and_why(seed):
    broken = copy.deepcopy(seed[:2])
    broken[0]["services"][0]["status"] = "open"
    del broken[1]["name"]
    broken[1]["locations"][0]["x_region"] = "atlantis"
    with pytest.raises(directory.InvalidDirectory) as refused:
        directory.import_json(broken)
    errors = refused.value.errors
    assert any(e.startswith("organizations[0].services[0].status:") for e in errors), errors
    assert any(e.startswith("organizations[1]:") and "'name' is a required property" in e for e in errors), errors
    assert any(e.startswith("organizations[1].locations[0].x_region:") for e in errors), errors

    twice = copy.deepcopy([seed[0], seed[0]])
    with pytest.raises(directory.InvalidDirectory, match="used twice"):
        directory.import_json(twice)
    with pytest.raises(directory.InvalidDirectory, match="not a zip"):
        directory.import_csv_zip(b"name,phone\n")


def test_a_partner_network_can_add_a_youth_service_with_hours_and_languages_through_csv(seed):
    extra = directory.normalise({
        "id": "0f6a3a3e-38a5-4c1e-a1a6-1d1c9a0e6b01", "name": "Service d'aide à la jeunesse (test)",
        "description": "Imported by a partner network", "email": "saj@example.org",
        "x_i18n": {"name": {"fr": "Service d'aide à la jeunesse", "nl": "Jeugdhulp"}},
        "services": [{
            "id": "0f6a3a3e-38a5-4c1e-a1a6-1d1c9a0e6b02", "name": "Youth services", "status": "active",
            "attributes": [{"id": "0f6a3a3e-38a5-4c1e-a1a6-1d1c9a0e6b03", "taxonomy_term": {
                "id": "0f6a3a3e-38a5-4c1e-a1a6-1d1c9a0e6b04", "code": "youth_services", "name": "Youth services",
                "description": "Youth services", "taxonomy": domain.CATEGORY_TAXONOMY}}],
            "languages": [{"id": "0f6a3a3e-38a5-4c1e-a1a6-1d1c9a0e6b05", "code": "fr", "name": "French"}],
            "schedules": [{"id": "0f6a3a3e-38a5-4c1e-a1a6-1d1c9a0e6b06", "freq": "MONTHLY", "byday": "2MO",
                           "interval": 1, "opens_at": "09:00+01:00", "closes_at": "12:00+01:00"}],
        }],
    })
    combined = seed + [extra]
    back = directory.import_csv_zip(directory.export_csv_zip(combined))
    assert back == combined
    assert back[-1]["services"][0]["schedules"][0]["interval"] == 1
