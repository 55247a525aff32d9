"""Builds seed/directory.json from the seed page (seed/source_page.txt), once.

Every organisation below was read by hand against the page: phones and e-mails are written
exactly as the page writes them (odd spacing and typos included), descriptions and service
evidence are verbatim quotes, and nothing the page does not say is added. Where a value had to be
derived (a region from a city or a sentence, a country for an HSDS address), the record says so
(`x_region_derived`, `x_region_basis`, `x_seed_notes`).

Run `python -m services.referrals.seed.make_directory` after editing; the service reads only
the JSON, and tests/unit/test_referrals_directory.py checks the two agree.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from services.referrals.domain import CATEGORIES, CATEGORY_TAXONOMY, REGIONS
from services.referrals.directory import normalise

HERE = Path(__file__).parent
SOURCE = HERE / "source_page.txt"
TARGET = HERE / "directory.json"
NAMESPACE = uuid.UUID("6f1d3c52-7a0e-4d52-9b8e-2f7a3c1e9d40")


def uid(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


def lines(first: int, last: int) -> list[str]:
    return SOURCE.read_text(encoding="utf-8").splitlines()[first - 1:last]


def phone(key: str, number: str, *, kind: str = "voice", description: str | None = None,
          languages: tuple[tuple[str, str], ...] = ()) -> dict:
    pid = uid(key, "phone", number)
    return {"id": pid, "number": number, "type": kind, "description": description,
            "languages": [{"id": uid(pid, "language", code), "name": name, "code": code} for code, name in languages]}


def address_location(key: str, address_1: str, postal_code: str, city: str, region: str, *, schedules=()) -> dict:
    lid = uid(key, "location", address_1)
    return {
        "id": lid, "location_type": "physical",
        "addresses": [{
            "id": uid(lid, "address"), "address_1": address_1, "city": city, "postal_code": postal_code,
            "region": REGIONS[region]["en"], "state_province": REGIONS[region]["en"], "country": "BE",
            "address_type": "physical",
        }],
        "schedules": list(schedules),
        "x_region": region, "x_region_derived": False, "x_region_basis": f"address city {city}",
    }


def text_location(key: str, name: str, region: str, basis: str) -> dict:
    """A place the page names without an address: region derived from the quoted words."""
    return {"id": uid(key, "location", name), "location_type": "physical", "name": name,
            "x_region": region, "x_region_derived": True, "x_region_basis": f"the words “{basis}”"}


def weekly(key: str, byday: str, opens: str, closes: str, description: str) -> dict:
    return {"id": uid(key, "schedule", byday, opens), "freq": "WEEKLY", "interval": 1, "byday": byday,
            "opens_at": opens, "closes_at": closes, "description": description}


def service(key: str, category: str, description: str, *, eligibility: str | None = None, name: str | None = None,
            phones=(), schedules=(), n: int = 1) -> dict:
    sid = uid(key, "service", category, str(n))
    labels = CATEGORIES[category]
    return {
        "id": sid,
        "name": name or labels["en"],
        "description": description,
        "status": "active",
        "eligibility_description": eligibility,
        "phones": list(phones),
        "schedules": list(schedules),
        "attributes": [{
            "id": uid(sid, "attribute", category),
            "link_type": "service_category",
            "taxonomy_term": {"id": uid("taxonomy", category), "code": category, "name": labels["en"],
                              "description": f"{labels['en']} ({labels['fr']} / {labels['nl']})",
                              "taxonomy": CATEGORY_TAXONOMY},
        }],
        "x_i18n": None if name else {"name": {k: v for k, v in labels.items()}},
    }


def organisation(key: str, block: tuple[int, int], description: tuple[int, int], *, name: str, email: str | None = None,
                 alternate_name: str | None = None, i18n_name: dict | None = None, website: str | None = None,
                 website_listed: bool = True, phones=(), contacts=(), locations=(), services=(),
                 notes: str | None = None) -> dict:
    return {
        "id": uid(key),
        "name": name,
        "alternate_name": alternate_name,
        "description": "\n".join(lines(*description)),
        "email": email,
        "website": website,
        "phones": list(phones),
        "contacts": [{"id": uid(key, "contact", c["email"]), **c} for c in contacts],
        "locations": list(locations),
        "services": list(services),
        "x_i18n": {"name": i18n_name} if i18n_name else None,
        "x_website_listed": website_listed,
        "x_source_text": "\n".join(lines(*block)),
        "x_seed_notes": notes,
    }


def build() -> list[dict]:
    orgs = []

    k = "apd"
    every = "provides administrative, legal and psycho-social assistance to all migrants (through phone helpdesk and on appointment)"
    orgs.append(organisation(
        k, (10, 15), (14, 15), name="Aide aux Personnes Déplacées asbl", alternate_name="Aid to Displaced Persons",
        i18n_name={"fr": "Aide aux Personnes Déplacées asbl", "en": "Aid to Displaced Persons"},
        email="administration@apdasbl.be", phones=[phone(k, "+32 04 342 06 02")],
        locations=[address_location(k, "93/1 rue Jean d’Outremeuse", "4020", "Liège", "wallonia"),
                   text_location(k, "Namur", "wallonia", "organization in Wallonia"),
                   text_location(k, "Braine-le-Comte", "wallonia", "organization in Wallonia")],
        services=[service(k, "social_assistance", every, eligibility="all migrants"),
                  service(k, "legal_aid", every, eligibility="all migrants"),
                  service(k, "psychosocial_support", every, eligibility="all migrants"),
                  service(k, "language_integration", "organizes civic integration and French language classes")]))

    k = "adde"
    orgs.append(organisation(
        k, (16, 19), (19, 19), name="ADDE", email="servicejuridique@adde.be",
        contacts=[{"department": "general questions", "email": "servicejuridique@adde.be"},
                  {"department": "international family law", "email": "dip@adde.be"}],
        phones=[phone(k, "+ 32 02 227 42 41")],
        locations=[text_location(k, "Brussels", "brussels", "based in Brussels")],
        services=[service(k, "legal_aid", "The center also answers legal questions (through a phone helpdesk and on appointment)"),
                  service(k, "social_assistance", "has a social service (on appointment only)")],
        notes="The page says ADDE does not intervene in job search or housing."))

    k = "cire"
    who = "refugees and asylum seekers"
    orgs.append(organisation(
        k, (20, 29), (29, 29), name="CIRE", email="cire@cire.be",
        contacts=[{"department": "reception of asylum seekers", "email": "accuiel@cire.be"}],
        phones=[phone(k, "+32 2 6297 734"), phone(k, "+32 2 629 77 10"), phone(k, "+32 2 629 77 33", kind="fax")],
        locations=[address_location(k, "Rue du Viviers, 80/82", "1050", "Brussels", "brussels")],
        services=[service(k, "shelter", "providing services to refugees and asylum seekers including over 600 beds", eligibility=who),
                  service(k, "housing_search", "assistance in finding and affording more permanent accommodation", eligibility=who),
                  service(k, "detention_visits", "visits to detention centres", eligibility=who),
                  service(k, "language_integration", "French language classes and assistance integrating into Belgian culture",
                          eligibility=who),
                  service(k, "social_assistance", "interpretation and aid in voluntary repatriation", eligibility=who),
                  service(k, "information_advocacy", "Also works on advocacy for refugee and migrant policy.")],
        notes="The page lists Website, Facebook, Twitter and Instagram without their addresses, and says other "
              "e-mail addresses for specific services are on their website."))

    k = "intact"
    orgs.append(organisation(
        k, (30, 32), (32, 32), name="Intact", email="contact@intact-association.org", website_listed=False,
        phones=[phone(k, "+32 (0)2 539 02 04"),
                phone(k, "+32(0) 497 55 04 56", description="Dutch", languages=(("nl", "Dutch"),)),
                phone(k, "+32(0) 479 67 19 46", description="French", languages=(("fr", "French"),))],
        services=[service(k, "fgm_support", "aims at becoming a ‘place of reference’ for legal issues related to FGM/C"),
                  service(k, "legal_aid", "supporting individuals and professionals in legal or judicial proceedings (legal, "
                                          "judicial consultations, follow-up of applications for asylum, support for professionals "
                                          "confronted with child victims or children at risk, organisation of training/symposium on FGM)")]))

    k = "jrs"
    orgs.append(organisation(
        k, (33, 39), (39, 39), name="JRS Belgium", email="belgium@jrs.net",
        phones=[phone(k, "+32-2 738 0818"), phone(k, "32 (0)800 14 912"), phone(k, "+32-2 738 0816", kind="fax")],
        locations=[address_location(k, "Maurice Liétart 31/9", "1150", "Bruxelles", "brussels", schedules=[
            weekly(k, "MO", "09:30", "12:30", "Monday: from 9h30 until 12h30"),
            weekly(k, "TH", "09:30", "12:30", "Thursday: from 9h30 until 12h30")])],
        services=[service(k, "detention_visits", "visiting and offering services to foreigners – asylum seekers and irregular "
                                                 "migrants – detained in administrative detention centres",
                          eligibility="asylum seekers and irregular migrants – detained in administrative detention centres")],
        notes="Opening hours as the page gives them: Monday and Thursday, 9h30 to 12h30 (local time)."))

    k = "caritas"
    orgs.append(organisation(
        k, (40, 45), (45, 45), name="Caritas International", email="infofr@caritasint.be",
        phones=[phone(k, "+32 2 229 36 11"), phone(k, "+32 2 229 36 36", kind="fax")],
        locations=[address_location(k, "Rue de la Charité 43", "1210", "Bruxelles", "brussels")],
        services=[service(k, "shelter", "it organizes the reception of applicants of international protection",
                          eligibility="applicants of international protection"),
                  service(k, "social_assistance", "assists refugees with integration issues", eligibility="refugees"),
                  service(k, "family_reunification", "provides support to migrants in Belgium with regards to family "
                                                     "reunification and voluntary return"),
                  service(k, "detention_visits", "visits migrants in detention centers"),
                  service(k, "youth_services", "has established a team of professional guardians for unaccompanied minors",
                          eligibility="unaccompanied minors")]))

    k = "caw"
    counsel = ("The CAW provides advice and counseling on a diverse range of topics (mental health, administration issues "
               "and others), including on migration issues.")
    orgs.append(organisation(
        k, (46, 50), (48, 50), name="Centrum Algemeen Welzijnswerk", alternate_name="CAW",
        i18n_name={"nl": "Centrum Algemeen Welzijnswerk"},
        phones=[phone(k, "+32 080013500")],
        locations=[text_location(k, "Flanders", "flanders", "11 centers spread across Flanders and Brussels"),
                   text_location(k, "Brussels", "brussels", "11 centers spread across Flanders and Brussels")],
        services=[service(k, "social_assistance", counsel), service(k, "psychosocial_support", counsel),
                  service(k, "shelter", "In addition, CAW may provide (temporary) shelter to those in need.",
                          eligibility="those in need")]))

    k = "convivial"
    newcomers = "newcomers with legal stay (including refugees) in Brussels"
    social = "Convivial provides support through social assistance (administrative, legal, psychological, family reunification)"
    friendly = "Friendly also provides psycho-social help and guidance in job search, housing assistance and material assistance to refugees."
    orgs.append(organisation(
        k, (51, 56), (55, 56), name="Convivial", email="info@convivial.be",
        contacts=[{"email": "info.bapa@convivial.be"}],
        phones=[phone(k, "+32 02 503 43 46"), phone(k, "+32 02 315 39 00")],
        locations=[address_location(k, "Rue du Charroi 33/35", "1190", "Bruxelles", "brussels")],
        services=[service(k, "social_assistance", social, eligibility=newcomers),
                  service(k, "legal_aid", social, eligibility=newcomers),
                  service(k, "family_reunification", social, eligibility=newcomers),
                  service(k, "language_integration", "French language and civic integration classes", eligibility=newcomers),
                  service(k, "psychosocial_support", friendly, eligibility="refugees"),
                  service(k, "employment_training", friendly, eligibility="refugees"),
                  service(k, "housing_search", friendly, eligibility="refugees"),
                  service(k, "material_aid", friendly, eligibility="refugees")],
        notes="“Friendly” in the page's second paragraph is Convivial (a translation of its name)."))

    k = "myria"
    orgs.append(organisation(
        k, (57, 62), (61, 62), name="Myria", alternate_name="Belgian Federal Migration Centre",
        i18n_name={"en": "Belgian Federal Migration Centre"}, email="myria@myria.be",
        phones=[phone(k, "+32 (0) 800 14 912"), phone(k, "+32 (0)2 212 30 00")],
        locations=[address_location(k, "Place Victor Horta 40, box 40", "1060", "Saint-Gilles (Brussels)", "brussels")],
        services=[service(k, "legal_aid", "offers legal advice and information on migration issues (through phone helpdesk "
                                          "and on-site – on appointment only)"),
                  service(k, "family_reunification", "Myria is the implementing partner of UNHCR in Belgium regarding family "
                                                     "reunification.")]))

    k = "nansen"
    advice = ("NANSEN offers personalized advice in individual cases, visits closed centres and offers support and gives "
              "training sessions to lawyers.")
    orgs.append(organisation(
        k, (63, 68), (67, 68), name="NANSEN", email="info@nansenrefugee.be",
        phones=[phone(k, "+32 487 84 65 40"), phone(k, "+ 32 0472/040907")],
        locations=[address_location(k, "Rue Émile Féron/Émile Féronstraat 153", "1060", "Bruxelles", "brussels")],
        services=[service(k, "legal_aid", advice, eligibility="asylum seekers"),
                  service(k, "detention_visits", advice, eligibility="asylum seekers")],
        notes="The page writes the city as “Brussel 1060 Bruxelles”."))

    k = "sireas"
    rights = ("supports migrants in accessing their rights in Belgium, including applying for residence and work permit, "
              "social security, housing, health, schooling, etc. (social and legal services)")
    orgs.append(organisation(
        k, (69, 73), (73, 73), name="Groupe Sireas", email="sireas@sireas.be",
        phones=[phone(k, "+ 32 02 649 99 58")],
        locations=[address_location(k, "26, rue du Boulet", "1000", "Bruxelles", "brussels"),
                   text_location(k, "Namur", "wallonia", "located in Brussels, Namur and Liège (Wallonia)"),
                   text_location(k, "Liège", "wallonia", "located in Brussels, Namur and Liège (Wallonia)")],
        services=[service(k, "social_assistance", rights, eligibility="migrants"),
                  service(k, "legal_aid", rights, eligibility="migrants"),
                  service(k, "housing_search", rights, eligibility="migrants"),
                  service(k, "employment_training", "Groupe Sireas also provides different trainings to enhance "
                                                    "socio-professional integration.")]))

    k = "espace28"
    support = ("providing local services and support to migrants, especially applicants of international protection and "
               "refugees, including through legal and psychological support (social service)")
    orgs.append(organisation(
        k, (74, 77), (77, 77), name="Espace 28",
        phones=[phone(k, "+32 087341053")],
        locations=[address_location(k, "Rue de la Colline 18", "4800", "Verviers", "wallonia")],
        services=[service(k, "legal_aid", support, eligibility="migrants, especially applicants of international protection and refugees"),
                  service(k, "psychosocial_support", support,
                          eligibility="migrants, especially applicants of international protection and refugees"),
                  service(k, "language_integration", "Espace28 also offers French language and civic integration courses for "
                                                     "migrants with legal stay", eligibility="migrants with legal stay")],
        notes="The page gives no e-mail address."))

    k = "steunpunt"
    gives = ("Steunpunt Asiel & Migratie gives judicial advice and administrative support (incl. finding a home) and "
             "psychosocial support and provides food support to people dealing with precarious residence permits.")
    precarious = "people dealing with precarious residence permits"
    orgs.append(organisation(
        k, (78, 81), (81, 81), name="Steunpunt Asiel & Migratie vzw",
        i18n_name={"nl": "Steunpunt Asiel & Migratie vzw"}, email="info@vluchtelingendienst.be",
        phones=[phone(k, "+32 015 34 07 88")],
        locations=[text_location(k, "Mechelen", "flanders", "active in Mechelen (Flanders)")],
        services=[service(k, "legal_aid", gives, eligibility=precarious),
                  service(k, "social_assistance", gives, eligibility=precarious),
                  service(k, "housing_search", gives, eligibility=precarious),
                  service(k, "psychosocial_support", gives, eligibility=precarious),
                  service(k, "material_aid", gives, eligibility=precarious)]))

    k = "pointdappui"
    orgs.append(organisation(
        k, (82, 87), (87, 87), name="Point d’Appui ASBL", i18n_name={"fr": "Point d’Appui ASBL"},
        email="info@pointdappui.be",
        phones=[phone(k, "+32 04 227 69 51"), phone(k, "+32 04 227 42 64", kind="fax")],
        locations=[address_location(k, "Rue Maghin, 33", "4000", "Liège", "wallonia")],
        services=[service(k, "legal_aid", "providing legal support to migrants, especially to persons staying in Belgium "
                                          "irregularly and persons in precarious stay (including applicants of international protection)",
                          eligibility="migrants, especially to persons staying in Belgium irregularly and persons in precarious "
                                      "stay (including applicants of international protection)")]))

    k = "vluchtelingenwerk"
    professionals = "everyone who, professionally and voluntarily, works with, assists or counsels asylum seekers and refugees"
    orgs.append(organisation(
        k, (88, 95), (94, 95), name="Flemish Refugee Action", i18n_name={"en": "Flemish Refugee Action"},
        email="info@vluchtelingenwerk.be",
        phones=[phone(k, "+32 02 225 44 00"), phone(k, "+32 02 201 03 76", kind="fax")],
        locations=[address_location(k, "Kruidtuinstraat 75", "1210", "Brussels", "brussels")],
        services=[service(k, "legal_aid", "Legal helpdesk: Telephone on 02-205 00 55, Monday and Friday 9:00-12:30, Wednesday "
                                          "13:30-17:00 or via e-mail", name="Legal helpdesk", eligibility=professionals,
                          phones=[phone(k, "02-205 00 55", description="Legal helpdesk")],
                          schedules=[weekly(k, "MO,FR", "09:00", "12:30", "Monday and Friday 9:00-12:30"),
                                     weekly(k, "WE", "13:30", "17:00", "Wednesday 13:30-17:00")]),
                  service(k, "information_advocacy", "Flemish Refugee Action offers expert information, training, publications "
                                                     "and extensive helpdesks to everyone who, professionally and voluntarily, "
                                                     "works with, assists or counsels asylum seekers and refugees.",
                          eligibility=professionals)],
        notes="The page lists Website and Facebook without their addresses. The helpdesk serves professionals and "
              "volunteers, not the people themselves."))

    k = "gams"
    orgs.append(organisation(
        k, (97, 99), (99, 99), name="GAMS Belgium", alternate_name="GAMS", email="info@gams.be", website_listed=False,
        phones=[phone(k, "+32 (0)2 219 43 40")],
        services=[service(k, "fgm_support", "GAMS supports mutilation by guiding them to health and legal aid services."),
                  service(k, "psychosocial_support", "Moreover, it offers individual psychological counselling and group workshops."),
                  service(k, "information_advocacy", "advocacy at national and international level for the abolition of FGM/C")],
        notes="The page spells the name “GAMS Belguim”."))

    k = "cncd"
    orgs.append(organisation(
        k, (100, 106), (103, 106), name="CNCD-11.11.11", alternate_name="National Center for Development Cooperation",
        i18n_name={"en": "National Center for Development Cooperation"},
        locations=[address_location(k, "Quai du Commerce 9", "1000", "Brussels", "brussels")],
        services=[service(k, "information_advocacy", "coordinates the voice of more than 70 Belgian international solidarity "
                                                     "NGOs and thousands of volunteers")],
        notes="The page offers a contact form without its address, and no phone or e-mail."))

    k = "ocmw-cpas"
    means = ("people who have insufficient means of subsistence or do not have a permanent place of residence")
    include = "Social services include financial assistance, emergency medical aid, social emergency, etc."
    orgs.append(organisation(
        k, (107, 108), (107, 108), name="OCMW/CPAS", i18n_name={"nl": "OCMW", "fr": "CPAS"}, website_listed=False,
        services=[service(k, "social_assistance", "provides several social services to people who have insufficient means "
                                                  "of subsistence or do not have a permanent place of residence", eligibility=means),
                  service(k, "material_aid", include, eligibility=means),
                  service(k, "health", include, eligibility=means)],
        notes="Every municipality or city has its own office; the page gives no address, phone or e-mail."))

    k = "samusocial"
    emergency = "providing free emergency support (shelter, medical, psychosocial support) to homeless people"
    orgs.append(organisation(
        k, (109, 113), (113, 113), name="Samusocial", email="info@samusocial.be",
        phones=[phone(k, "+32 (0)800 99 340"), phone(k, "+32 025511220")],
        locations=[address_location(k, "Boulevard Poincaré 68-70", "1070", "Bruxelles", "brussels"),
                   text_location(k, "Neder-Over-Hembeek", "brussels", "in Brussels (Neder-Over-Hembeek)")],
        services=[service(k, "shelter", emergency, eligibility="homeless people"),
                  service(k, "health", emergency, eligibility="homeless people"),
                  service(k, "psychosocial_support", emergency, eligibility="homeless people"),
                  service(k, "shelter", "Samusocial also runs a reception center for applicants of international protection in "
                                        "Brussels (Neder-Over-Hembeek).",
                          eligibility="applicants of international protection", n=2)]))

    k = "w2eu"
    orgs.append(organisation(
        k, (114, 116), (116, 116), name="w2eu.info", email="contact@w2eu.info", website="https://w2eu.info",
        contacts=[{"email": "w2eu_info@yahoo.com"}],
        services=[service(k, "information_advocacy", "an independent source of information for refugees coming to Europe",
                          eligibility="refugees coming to Europe")],
        notes="The website is the page's hyperlink text “w2eu.info”; the scheme https:// was added."))

    return [normalise(org) for org in orgs]


def main() -> None:
    TARGET.write_text(json.dumps(build(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
